"""API keys: only hashes stored, revocation seen at once, atomic 0600 writes, no lost updates."""

from __future__ import annotations

import json
import multiprocessing
import stat

import pytest

import tourserver.store.keys as keys_module
from tourserver.errors import TourError
from tourserver.store.keys import ROLES, ApiKey, KeyStore


def test_create_verify_list_revoke(tmp_path):
    store = KeyStore(tmp_path)
    host, host_key = store.create("host", "Jiefangbei countdown")
    creator, creator_key = store.create("creator")
    assert host_key.startswith(f"tsk_{host.id}_") and len(host.id) == 12
    assert host.role == "host" and host.name == "Jiefangbei countdown"
    assert creator.name == "" and creator.created_at.endswith("Z")
    assert store.verify(host_key) == host and store.verify(creator_key) == creator
    assert store.list() == [host, creator]
    assert host.to_json() == {"id": host.id, "role": "host", "name": "Jiefangbei countdown",
                              "created_at": host.created_at}
    assert store.revoke(host.id) is True
    assert store.verify(host_key) is None and store.verify(creator_key) == creator
    assert store.revoke(host.id) is False
    assert store.list() == [creator]


def test_bad_role_or_name_is_refused(tmp_path):
    store = KeyStore(tmp_path)
    with pytest.raises(TourError) as info:
        store.create("admin")
    assert info.value.code == "invalid_role"
    with pytest.raises(TourError):
        store.create("host", "two\nlines")
    assert store.list() == []


def test_another_instance_sees_changes_at_once(tmp_path):
    server, cli = KeyStore(tmp_path), KeyStore(tmp_path)
    assert server.verify("tsk_000000000000_" + "a" * 43) is None  # no file yet
    record, key = cli.create("host")
    assert server.verify(key) == record  # a new key works at once
    for _ in range(3):  # and, with the cache warm, keeps working
        assert server.verify(key) == record
    assert KeyStore(tmp_path).revoke(record.id)
    assert server.verify(key) is None  # a revoked key fails at once
    other, other_key = cli.create("creator")
    assert server.verify(other_key) == other and server.list() == [other]
    (tmp_path / "keys.json").unlink()
    assert server.verify(other_key) is None and server.list() == []


def test_verify_stats_once_and_reads_only_on_change(tmp_path, monkeypatch):
    store = KeyStore(tmp_path)
    record, key = store.create("host")
    assert store.verify(key) == record  # warm
    calls = {"stat": 0, "open": 0}
    real_stat, real_open = keys_module.os.stat, open

    def counting_stat(*args, **kwargs):
        calls["stat"] += 1
        return real_stat(*args, **kwargs)

    def counting_open(*args, **kwargs):
        calls["open"] += 1
        return real_open(*args, **kwargs)

    monkeypatch.setattr(keys_module.os, "stat", counting_stat)
    monkeypatch.setattr(keys_module, "open", counting_open, raising=False)
    for _ in range(5):
        assert store.verify(key) == record
    assert store.verify("not a key") is None  # malformed: not even a stat
    assert calls == {"stat": 5, "open": 0}


def test_file_is_private_and_holds_no_key(tmp_path):
    store = KeyStore(tmp_path)
    keys = [store.create(role)[1] for role in ROLES]
    store.revoke(store.list()[0].id)  # a rewrite keeps the mode too
    path = tmp_path / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys.lock").stat().st_mode) == 0o600
    text = path.read_text()
    for key in keys:
        assert key not in text and key.split("_", 2)[2] not in text
    records = json.loads(text)["keys"]
    assert len(records) == 1 and set(records[0]) == {"id", "role", "name", "created_at",
                                                     "sha256"}


@pytest.mark.parametrize("bad", [
    "", "tsk_", "Bearer tsk_x", "tsk_" + "a" * 300, "tsk_0123456789ab_" + "é" * 43,
    "xyz_0123456789ab_" + "a" * 43, "tsk_0123456789ab_" + "a" * 42,
    "tsk_0123456789ab_" + "a" * 43 + "\n", None, 42, b"tsk_",
])
def test_malformed_keys_are_none(tmp_path, bad):
    store = KeyStore(tmp_path)
    _, key = store.create("host")
    assert store.verify(bad) is None
    assert store.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"keys": [{"id": "x"}]}',
                                  b"\xff\xfe"])
def test_corrupt_file_is_a_clear_error(tmp_path, body):
    (tmp_path / "keys.json").write_bytes(body)
    store = KeyStore(tmp_path)
    for call in (store.list, lambda: store.verify("tsk_0123456789ab_" + "a" * 43),
                 lambda: store.create("host"), lambda: store.revoke("0123456789ab")):
        with pytest.raises(TourError) as info:
            call()
        assert info.value.code == "keys_invalid"
        assert "keys.json" in info.value.message
    assert (tmp_path / "keys.json").read_bytes() == body  # never overwritten


def _create_many(data_dir, barrier, results, count: int) -> None:
    store = KeyStore(data_dir)
    barrier.wait()  # all processes start writing together
    for i in range(count):
        results.put(store.create("creator", f"n{i}")[1])


def test_concurrent_creates_lose_nothing(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_create_many, args=(tmp_path, barrier, results, 5))
             for _ in range(4)]
    for p in procs:
        p.start()
    made = [results.get(timeout=60) for _ in range(20)]
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    store = KeyStore(tmp_path)
    assert len(store.list()) == 20 and len({k.id for k in store.list()}) == 20
    assert all(isinstance(store.verify(key), ApiKey) for key in made)
