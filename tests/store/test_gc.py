"""`tourserver gc`: old builds and the files only they use go; nothing a kept build
references ever does."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time

from support import REPO, make_mini_root, tiny_glb

from tourserver.config import Settings
from tourserver.http.app import create_app
from tourserver.store.build import DataDir, build
from tourserver.store.catalog import load_build, load_published
from tourserver.store.gc import blob_names, collect


def run_gc(*args):
    return subprocess.run([sys.executable, "-m", "tourserver", "gc", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def mini_root(where):
    """The mini tour with real narration (the build checks audio by its bytes)."""
    root = make_mini_root(where)
    narration = REPO / "assets/chongqing-night/narration/en"
    for lang in ("en", "zh-Hans"):
        for ext in ("m4a", "mp3"):
            shutil.copyfile(narration / f"jiefangbei.{ext}", root / f"assets/mini/{lang}/a.{ext}")
    return root


def three_builds(tmp_path):
    """Three published builds of one tour, each with its own scene (so its own blobs)."""
    root = mini_root(tmp_path / "content")
    data = tmp_path / "data"
    ids = []
    for subdivisions in (2, 3, 4):
        tiny_glb(root / "assets/mini/a.glb", subdivisions)
        ids.append(build(root, data).build_id)
    assert len(set(ids)) == 3 and DataDir(data).current_build_id() == ids[-1]
    return root, data, ids


def catalog_json(data, build_id):
    return json.loads(DataDir(data).catalog_path(build_id).read_text())


def files_of(data):
    return {p.relative_to(data): p.stat().st_mtime_ns for p in data.rglob("*") if p.is_file()}


async def test_gc_removes_the_oldest_build_and_only_its_files(tmp_path, aiohttp_client):
    root, data, (oldest, previous, current) = three_builds(tmp_path)
    refs = {b: blob_names(catalog_json(data, b)) for b in (oldest, previous, current)}
    only_oldest = refs[oldest] - refs[previous] - refs[current]
    source = catalog_json(data, oldest)["tours"][0]["files"]["assets/mini/a.glb"]
    assert f"{source['sha256']}.glb" in only_oldest and len(only_oldest) >= 2  # and variants
    blobs = DataDir(data).blobs.root
    caches_before = set((data / "cache").glob("*.json"))

    proc = run_gc("--data", data, "--keep", 1)

    assert proc.returncode == 0, proc.stderr
    assert f"removed builds/{oldest}.json" in proc.stdout
    assert f"{len(only_oldest)} file(s)" in proc.stdout and "freed" in proc.stdout
    assert f"kept build {current} (current), {previous}" in proc.stdout
    assert not DataDir(data).catalog_path(oldest).exists()
    assert not (data / "builds" / oldest).exists()  # its precomputed files too
    assert (data / "builds" / previous / "tours-1.json").is_file()
    for name in only_oldest:
        assert not (blobs / name[:2] / name).exists()
    for name in refs[previous] | refs[current]:  # everything a kept build references
        path = blobs / name[:2] / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == name.split(".")[0]
    assert len(set((data / "cache").glob("*.json"))) == len(caches_before) - 1
    assert DataDir(data).current_build_id() == current
    load_build(data, previous)  # a server still on the previous build finds it whole

    # The server still serves every file of the current build after gc.
    catalog = load_published(data)
    client = await aiohttp_client(create_app(Settings(data_dir=data, content_root=root,
                                                      access_log=False), catalog))
    for ref in catalog.blobs.values():
        resp = await client.get(ref.url)
        assert resp.status == 200 and len(await resp.read()) == ref.bytes, ref.url
    # And the cache entries of kept builds still spare a rebuild the work.
    tiny_glb(root / "assets/mini/a.glb", 3)
    assert build(root, data).variants_made == 0


def test_default_keep_spares_the_two_previous_builds(tmp_path):
    _, data, ids = three_builds(tmp_path)
    before = files_of(data)
    result = collect(data)
    assert result.kept == [ids[2], ids[1], ids[0]]
    assert result.builds == [] and result.blobs == [] and result.bytes_freed == 0
    assert files_of(data) == before


def test_dry_run_removes_nothing(tmp_path):
    _, data, (oldest, previous, _) = three_builds(tmp_path)
    before = files_of(data)

    proc = run_gc("--data", data, "--keep", 0, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert f"would remove builds/{oldest}.json" in proc.stdout
    assert f"would remove builds/{previous}.json" in proc.stdout and "to free" in proc.stdout
    assert files_of(data) == before

    report = json.loads(run_gc("--data", data, "--keep", 0, "--dry-run", "--json").stdout)
    assert report["dry_run"] and report["bytes_freed"] > 0
    # each build's catalog and its precomputed files (builds/<id>/)
    assert {b["path"] for b in report["builds"]} == {
        f"builds/{build}{name}" for build in (oldest, previous)
        for name in (".json", "/tours-1.json", "/cells-1.json")}
    assert files_of(data) == before


def test_exit_codes(tmp_path):
    nothing = run_gc("--data", tmp_path / "empty")
    assert nothing.returncode == 1 and "Traceback" not in nothing.stderr
    assert "nothing is published" in nothing.stderr

    usage = run_gc("--data", tmp_path, "--keep", -1)
    assert usage.returncode == 2 and "--keep" in usage.stderr


def test_an_unreadable_kept_build_stops_gc_before_it_deletes_anything(tmp_path):
    _, data, (oldest, previous, _) = three_builds(tmp_path)
    DataDir(data).catalog_path(previous).write_text("{not json")
    before = files_of(data)
    proc = run_gc("--data", data, "--keep", 1)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"kept build {previous} cannot be read" in proc.stderr
    assert "nothing was removed" in proc.stderr
    assert files_of(data) == before


def test_gc_waits_for_a_build_in_progress(tmp_path):
    _, data, _ = three_builds(tmp_path)
    done = threading.Event()
    with DataDir(data).lock():  # as a build holds it
        worker = threading.Thread(target=lambda: (collect(data, keep=0), done.set()))
        worker.start()
        time.sleep(0.5)
        assert not done.is_set()
    worker.join(30)
    assert done.is_set()
