"""The build's start-up artifacts: what they hold, that a server loads the same documents
from them as from the manifests, that damage is a clear error, and link bases."""

from __future__ import annotations

import copy
import gzip
import json

import h3
import orjson
import pytest
from support import MINI_TOUR, make_mini_root

from tourserver.errors import TourError
from tourserver.model import cells
from tourserver.model.manifest import parse_tour
from tourserver.store import artifacts
from tourserver.store.blobs import BlobRef
from tourserver.store.build import DataDir, build
from tourserver.store.catalog import Catalog, Links, load_build, load_published, render


def _manifest_with_scene_anchor() -> dict:
    """The mini tour plus a scene with an anchor of its own, given as GCJ-02 with a height
    above sea level (a datum conversion and a geoid lookup the build must have done)."""
    manifest = copy.deepcopy(MINI_TOUR)
    manifest["stops"][0]["scenes"].append({
        "id": "mini-a-tower", "title": {"en": "Tower"}, "source": "assets/mini/a.glb",
        "anchor": {"lat": 29.5580, "lon": 106.5775, "altitude_msl": 250, "heading": 45,
                   "datum": "gcj02"}})
    return manifest


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("artifacts")
    root = make_mini_root(base / "content", _manifest_with_scene_anchor())
    data = base / "data"
    result = build(root, data)
    return root, data, result.build_id


def from_manifests(data, build_id, links=None) -> Catalog:
    """The way servers loaded before: every manifest parsed and checked again, the cell
    index computed again."""
    raw = json.loads(DataDir(data).catalog_path(build_id).read_text())
    tours = [parse_tour(e["manifest"], e["manifest_file"]) for e in raw["tours"]]
    files = {t.id: {rel: BlobRef.from_json(r) for rel, r in e["files"].items()}
             for t, e in zip(tours, raw["tours"], strict=True)}
    return Catalog.from_tours(build_id, DataDir(data).blobs, tours, files, raw["scenes"],
                              links=links)


def every_document(catalog: Catalog) -> dict[str, dict]:
    docs = {}
    for tour_id, tour in catalog.tours.items():
        for lang in (None, *tour.languages):
            docs[f"tour {tour_id} {lang}"] = catalog.tour_document(tour_id, lang)
            for tier in (None, "high", "low"):
                docs[f"pack {tour_id} {lang} {tier}"] = catalog.pack(tour_id, lang, tier)
        docs[f"tileset {tour_id}"] = catalog.tileset(tour_id)
        docs[f"summary {tour_id}"] = catalog.tour_summary(tour)
    for anchor_id in catalog.anchors:
        docs[f"anchor {anchor_id}"] = catalog.anchor_document(anchor_id)
    for scene_id in catalog.scenes:
        docs[f"scene {scene_id}"] = catalog.scene_document(scene_id)
    for res, by_cell in catalog.cell_index.items():
        for cell in by_cell:
            docs[f"cell {cell}"] = catalog.cell_document(cell, res)
    return docs


def test_the_build_writes_the_artifacts_before_publishing(built):
    _, data, build_id = built
    folder = DataDir(data).artifacts_dir(build_id)
    assert sorted(p.name for p in folder.iterdir()) == sorted([artifacts.CELLS_FILE,
                                                              artifacts.TOURS_FILE])
    tours = orjson.loads((folder / artifacts.TOURS_FILE).read_bytes())
    assert tours["format"] == artifacts.FORMAT and tours["build_id"] == build_id
    assert tours["counts"] == {"tours": 1, "stops": 2, "anchors": 3}
    cell_doc = orjson.loads((folder / artifacts.CELLS_FILE).read_bytes())
    assert set(cell_doc["resolutions"]) == {"7", "8"}
    assert not [p for p in (data / "builds").iterdir() if p.name.startswith(".tmp")]


def test_a_build_whose_artifacts_fail_is_not_published(mini_root, tmp_path, monkeypatch):
    data = tmp_path / "data"
    first = build(mini_root, data)
    (mini_root / "tours/mini/tour.yaml").write_text(
        (mini_root / "tours/mini/tour.yaml").read_text().replace("Mini tour", "Mini, again"))

    def fail(*_args, **_kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifacts, "encode", fail)
    with pytest.raises(OSError):
        build(mini_root, data)
    assert DataDir(data).current_build_id() == first.build_id
    assert load_published(data).build_id == first.build_id


def test_loading_gives_the_documents_the_manifests_give(built):
    _, data, build_id = built
    catalog, old_way = load_build(data, build_id), from_manifests(data, build_id)
    assert catalog.tours == old_way.tours  # the same model objects, field by field
    loaded, reference = every_document(catalog), every_document(old_way)
    assert loaded == reference
    kinds = {key.split()[0] for key in loaded}
    assert kinds == {"tour", "pack", "tileset", "summary", "anchor", "scene", "cell"}
    # the scene's own anchor kept its converted position (GCJ-02 -> WGS84, MSL -> ellipsoid)
    tower = loaded["anchor mini-a-tower"]
    assert tower["kind"] == "scene" and tower["geopose"]["position"]["lat"] != 29.5580


def test_the_cell_index_puts_everything_where_its_geometry_is(built):
    _, data, build_id = built
    catalog = load_build(data, build_id)
    tour = catalog.tours["mini"]
    for res in cells.DISCOVERY_RESOLUTIONS:
        expected_stops: dict[str, set] = {}
        for stop in tour.stops:
            p = stop.anchor.pose
            for cell in cells.circle_cells(p.lat, p.lon, stop.trigger.exit_radius_m, res):
                expected_stops.setdefault(cell, set()).add(stop.id)
        for anchor in tour.anchors():
            cell = h3.latlng_to_cell(anchor.pose.lat, anchor.pose.lon, res)
            doc = catalog.cell_document(cell, res)
            assert anchor.id in {a["id"] for a in doc["anchors"]}
        for cell, stop_ids in expected_stops.items():
            doc = catalog.cell_document(cell, res)
            assert {s["id"] for s in doc["stops"]} == stop_ids
            assert [t["id"] for t in doc["tours"]] == ["mini"]


def test_loading_checks_no_manifest_and_looks_nothing_up(built, monkeypatch):
    _, data, build_id = built

    def forbidden(*_args, **_kw):
        raise AssertionError("the server must not re-check manifests at start")

    import jsonschema

    from tourserver.model import geoid, manifest

    for name in ("parse_tour", "parse_tour_with_warnings", "schema_issues"):
        monkeypatch.setattr(manifest, name, forbidden)
    monkeypatch.setattr(geoid, "msl_to_ellipsoidal", forbidden)
    monkeypatch.setattr(jsonschema.Draft202012Validator, "iter_errors", forbidden)
    monkeypatch.setattr(cells, "circle_cells", forbidden)
    monkeypatch.setattr(cells, "line_cells", forbidden)
    catalog = load_build(data, build_id)
    assert catalog.cell_document(next(iter(catalog.cell_index[8])), 8)["stops"]


def _damage(path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "not json":
        path.write_bytes(b"\x00\xff garbage")
    elif how == "wrong shape":
        doc = orjson.loads(data)
        key = "tours" if "tours" in doc else "resolutions"
        doc[key] = {"x": 1} if key == "tours" else {"8": {"88": [1, 2]}}
        path.write_bytes(orjson.dumps(doc))
    elif how == "out of range":
        doc = orjson.loads(data)
        by_cell = doc["resolutions"]["8"]
        by_cell[next(iter(by_cell))][1] = [0, 10**6]
        path.write_bytes(orjson.dumps(doc))
    elif how == "other format":
        doc = orjson.loads(data)
        doc["format"] = artifacts.FORMAT + 1
        path.write_bytes(orjson.dumps(doc))
    elif how == "bad variant":
        doc = orjson.loads(data)
        doc["scenes"]["mini-a-scene"]["variants"] = [{"tier": "high"}]
        path.write_bytes(orjson.dumps(doc))
    elif how == "other build":
        doc = orjson.loads(data)
        doc["build_id"] = "0123456789abcdef"
        path.write_bytes(orjson.dumps(doc))


DAMAGE = [(name, how) for name in (artifacts.TOURS_FILE, artifacts.CELLS_FILE)
          for how in ("truncated", "empty", "not json", "wrong shape", "other format",
                      "other build")] + [(artifacts.CELLS_FILE, "out of range"),
                                         (artifacts.TOURS_FILE, "bad variant")]


@pytest.mark.parametrize(("name", "how"), DAMAGE)
def test_a_damaged_artifact_is_a_clear_error(mini_data, name, how):
    build_id = DataDir(mini_data).current_build_id()
    path = DataDir(mini_data).artifacts_dir(build_id) / name
    _damage(path, how)
    with pytest.raises(TourError) as caught:
        load_published(mini_data)
    assert caught.value.code == "catalog_unreadable"
    assert str(path) in caught.value.message and "tourserver build --force" in caught.value.message


def test_artifacts_counting_other_anchors_are_a_clear_error(mini_data):
    folder = DataDir(mini_data).artifacts_dir(DataDir(mini_data).current_build_id())
    for name in (artifacts.TOURS_FILE, artifacts.CELLS_FILE):
        doc = orjson.loads((folder / name).read_bytes())
        doc["counts"]["anchors"] += 1
        (folder / name).write_bytes(orjson.dumps(doc))
    with pytest.raises(TourError, match="2 anchors where its index expects 3") as caught:
        load_published(mini_data)
    assert caught.value.code == "catalog_unreadable"


def test_a_forced_build_repairs_damaged_artifacts(mini_root, mini_data):
    build_id = DataDir(mini_data).current_build_id()
    _damage(DataDir(mini_data).artifacts_dir(build_id) / artifacts.TOURS_FILE, "truncated")
    with pytest.raises(TourError):
        load_published(mini_data)
    assert build(mini_root, mini_data, force=True).build_id == build_id
    assert load_published(mini_data).tours["mini"].stops[0].id == "mini-a"


def test_a_data_dir_from_before_the_artifacts_says_to_rebuild_and_a_build_upgrades_it(
        mini_root, mini_data):
    data = DataDir(mini_data)
    build_id = data.current_build_id()
    for path in data.artifacts_dir(build_id).iterdir():
        path.unlink()
    data.artifacts_dir(build_id).rmdir()  # as an older tourserver left it
    with pytest.raises(TourError) as caught:
        load_published(mini_data)
    assert caught.value.code == "catalog_unreadable"
    assert "is missing" in caught.value.message
    assert "tourserver build --force" in caught.value.message
    result = build(mini_root, mini_data)  # nothing changed: no new build, but the artifacts
    assert not result.changed and result.build_id == build_id
    assert load_published(mini_data).build_id == build_id


def test_a_build_that_is_not_there_names_its_missing_catalog(mini_data):
    with pytest.raises(TourError, match="no catalog for build 0123456789abcdef") as caught:
        load_build(mini_data, "0123456789abcdef")
    assert caught.value.code == "catalog_unreadable"


LINKS = Links(content_base="https://cdn.example.org/c", api_base="https://tours.example.org/")


def _links_in(doc, found: list[tuple[str, str]], key: str = "") -> None:
    """Every (key, value) whose key names a link: url, uri, *_url, and links.*."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if isinstance(v, str) and (k in ("url", "uri") or k.endswith("_url")
                                       or key == "links"):
                found.append((k, v))
            else:
                _links_in(v, found, k)
    elif isinstance(doc, list):
        for item in doc:
            _links_in(item, found, key)


def test_links_point_at_the_configured_bases_in_every_document(built):
    _, data, build_id = built
    catalog = load_build(data, build_id, links=LINKS)
    assert LINKS.content_base == "https://cdn.example.org/c/"
    assert LINKS.api_base == "https://tours.example.org"
    docs = every_document(catalog)
    seen_kinds = set()
    for key, doc in docs.items():
        found: list[tuple[str, str]] = []
        _links_in(doc, found)
        if key.startswith("cell ") and not (doc["stops"] or doc["anchors"] or doc["tours"]):
            continue
        assert found, f"{key} has no links"
        for name, url in found:
            assert url.startswith(("https://cdn.example.org/c/",
                                   "https://tours.example.org/v1/")), (key, name, url)
            if url.startswith("https://cdn.example.org/c/"):
                assert url.removeprefix("https://cdn.example.org/c/") in catalog.blobs
                seen_kinds.add(key.split()[0] + " content")
            else:
                seen_kinds.add(key.split()[0] + " api")
    # content files are linked where clients fetch them, API documents everywhere
    assert {"tour content", "tour api", "scene content", "scene api", "tileset content",
            "pack content", "pack api", "cell api", "anchor api", "summary api"} <= seen_kinds
    # the same documents, only the bases differ (and so the hashes of linked documents)
    plain = every_document(load_build(data, build_id))

    def comparable(docs: dict) -> str:
        for key, doc in docs.items():
            if key.startswith("pack "):
                for f in doc["files"]:
                    if f["role"] == "document":
                        f["sha256"] = f["bytes"] = None
                doc["total_bytes"] = None
        return orjson.dumps(docs).decode()

    assert comparable(docs).replace("https://cdn.example.org/c/", "/c/").replace(
        "https://tours.example.org/", "/") == comparable(plain)


def test_documents_rendered_once_carry_a_gzip_copy():
    big = {"stops": [{"id": f"s{i}", "title": {"en": "A stop"}} for i in range(200)]}
    rendered = render(big, compress=True)
    assert rendered.gzip is not None and len(rendered.gzip) < len(rendered.body) / 4
    assert gzip.decompress(rendered.gzip) == rendered.body
    assert rendered.gzip_etag != rendered.etag and rendered.gzip_etag.startswith('"')
    assert render({"a": 1}, compress=True).gzip is None  # too small to be worth it
    assert render(big).gzip is None  # per-request bodies are not compressed


def test_a_load_leaves_the_collector_as_it_found_it(built):
    import gc

    _, data, build_id = built
    assert gc.isenabled()
    load_build(data, build_id)
    assert gc.isenabled()
    gc.disable()
    try:
        load_build(data, build_id)
        assert not gc.isenabled()
    finally:
        gc.enable()
