"""`tourserver keys` as an operator uses it: the key shown once, then only its id."""

from __future__ import annotations

import json
import subprocess
import sys

from tourserver.store.keys import KeyStore


def run(*args):
    return subprocess.run([sys.executable, "-m", "tourserver", "keys", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_create_list_revoke(tmp_path):
    made = run("create", "--role", "host", "--name", "Hongyadong lights", "--data", tmp_path)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("tsk_") and "\n" not in key
    assert "not be shown again" in made.stderr and key not in made.stderr
    record = KeyStore(tmp_path).verify(key)
    assert record is not None and record.role == "host" and record.name == "Hongyadong lights"

    listed = run("list", "--data", tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert record.id in listed.stdout and "Hongyadong lights" in listed.stdout
    assert "host" in listed.stdout and record.created_at in listed.stdout
    assert key not in listed.stdout and key.split("_", 2)[2] not in listed.stdout
    as_json = json.loads(run("list", "--data", tmp_path, "--json").stdout)
    assert as_json == [record.to_json()]

    revoked = run("revoke", record.id, "--data", tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    assert KeyStore(tmp_path).verify(key) is None
    assert record.id not in run("list", "--data", tmp_path).stdout


def test_create_json(tmp_path):
    made = run("create", "--role", "creator", "--data", tmp_path, "--json")
    assert made.returncode == 0, made.stderr
    body = json.loads(made.stdout)
    assert set(body) == {"id", "role", "name", "created_at", "key"}
    assert body["role"] == "creator" and body["name"] == ""
    assert KeyStore(tmp_path).verify(body["key"]).id == body["id"]


def test_revoke_unknown_id_exits_1(tmp_path):
    run("create", "--role", "host", "--data", tmp_path)
    proc = run("revoke", "feedfacecafe", "--data", tmp_path)
    assert proc.returncode == 1
    assert "error: no key with id feedfacecafe" in proc.stderr


def test_usage_errors_exit_2(tmp_path):
    assert run("create", "--role", "bogus", "--data", tmp_path).returncode == 2
    assert run("create", "--data", tmp_path).returncode == 2  # --role is required
    assert run("revoke", "--data", tmp_path).returncode == 2  # the id is required
    assert not (tmp_path / "keys.json").exists()


def test_corrupt_file_exits_1_with_one_line(tmp_path):
    (tmp_path / "keys.json").write_text("{")
    proc = run("list", "--data", tmp_path)
    assert proc.returncode == 1
    assert "keys.json" in proc.stderr and "[keys_invalid]" in proc.stderr
    assert "Traceback" not in proc.stderr
