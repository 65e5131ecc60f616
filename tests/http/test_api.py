"""The JSON API through aiohttp's test client, on a small built tour."""

from __future__ import annotations

import h3
import pytest

from tourserver.config import Settings
from tourserver.http.app import create_app
from tourserver.model import geo
from tourserver.store.catalog import load_published


@pytest.fixture()
async def client(aiohttp_client, mini_data, mini_root):
    settings = Settings(data_dir=mini_data, content_root=mini_root, access_log=False)
    return await aiohttp_client(create_app(settings, load_published(mini_data)))


async def get_json(client, url, status=200, **kw):
    resp = await client.get(url, **kw)
    assert resp.status == status, await resp.text()
    return resp, await resp.json(content_type=None)


def assert_error(body, code, field=None):
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert body["error"]["message"]
    if field:
        assert body["error"]["field"] == field


async def test_tour_list_and_document(client):
    _, listing = await get_json(client, "/v1/tours")
    assert [t["id"] for t in listing["tours"]] == ["mini"]
    resp, tour = await get_json(client, "/v1/tours/mini")
    assert resp.headers["Content-Type"].startswith("application/json")
    assert tour["languages"] == ["en", "zh-Hans"] and tour["timezone"] == "Asia/Shanghai"
    stop = tour["stops"][0]
    # every linked URL resolves: the manifest is all a client needs
    for url in [stop["anchor"]["url"], stop["anchor"]["geopose_url"], stop["scenes"][0]["url"],
                tour["links"]["tileset"], tour["links"]["pack"],
                *[a["url"] for n in stop["narration"].values() for a in n["audio"]],
                *[n["subtitles"]["url"] for n in stop["narration"].values()]]:
        r = await client.get(url)
        assert r.status == 200, url
    assert stop["narration"]["en"]["audio"][0]["mime"] == "audio/mp4"
    assert stop["narration"]["en"]["audio"][1]["mime"] == "audio/mpeg"


async def test_tour_etag_and_304(client):
    resp = await client.get("/v1/tours/mini")
    etag = resp.headers["ETag"]
    again = await client.get("/v1/tours/mini", headers={"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b""
    other = await client.get("/v1/tours/mini", headers={"If-None-Match": '"nope"'})
    assert other.status == 200
    zh = await client.get("/v1/tours/mini?lang=zh", headers={"If-None-Match": etag})
    assert zh.status == 200 and zh.headers["ETag"] != etag


async def test_lang_filter_keeps_one_language(client):
    _, tour = await get_json(client, "/v1/tours/mini?lang=zh")
    assert tour["language"] == "zh-Hans"
    assert tour["title"] == {"zh-Hans": "小游"}
    assert set(tour["stops"][0]["narration"]) == {"zh-Hans"}
    # a stop without a zh title falls back to the default language
    assert tour["stops"][1]["title"] == {"en": "B"}
    _, body = await get_json(client, "/v1/tours/mini?lang=fr", status=400)
    assert_error(body, "language_unavailable", "lang")
    assert "en, zh-Hans" in body["error"]["message"]


@pytest.mark.parametrize("url", ["/v1/tours/nope", "/v1/anchors/nope", "/v1/scenes/nope",
                                 "/v1/anchors/nope/geopose", "/v1/scenes/nope/glb",
                                 "/v1/tours/nope/pack", "/v1/tours/nope/tileset.json"])
async def test_unknown_ids_are_404_json(client, url):
    _, body = await get_json(client, url, status=404)
    assert_error(body, "not_found")


async def test_anchor_forms(client):
    _, doc = await get_json(client, "/v1/anchors/mini-a")
    pose = doc["geopose"]
    q = geo.heading_to_enu_quaternion(90)
    assert [pose["quaternion"][k] for k in "xyzw"] == pytest.approx(q)
    assert doc["arcore"]["altitude"] == pytest.approx(pose["position"]["h"])
    assert doc["arkit"]["altitude"] == pytest.approx(240.0, abs=1e-3)  # the MSL the author gave
    assert doc["arcore"]["eus_quaternion"] == pytest.approx(geo.enu_quaternion_to_eus(q))
    m = doc["enu_to_ecef"]
    origin = geo.geodetic_to_ecef(pose["position"]["lat"], pose["position"]["lon"],
                                  pose["position"]["h"])
    assert m[12:15] == pytest.approx(list(origin), abs=1e-6) and m[15] == 1
    resp, gp = await get_json(client, "/v1/anchors/mini-a/geopose")
    assert resp.headers["Content-Type"].startswith("application/geopose+json")
    assert gp == pose


async def test_scene_variants_and_client_hint_redirect(client):
    _, scene = await get_json(client, "/v1/scenes/mini-a-scene")
    tiers = {v["tier"]: v for v in scene["variants"]}
    assert set(tiers) == {"high", "medium", "low"} and scene["default_tier"] == "medium"
    for v in tiers.values():
        assert v["url"].startswith("/c/") and v["bytes"] > 0 and v["triangles"] > 0
        assert isinstance(v["extensions_required"], list) and "max_texture_px" in v
    cases = [({}, "medium"), ({"Save-Data": "on"}, "low"),
             ({"ECT": "4g", "Device-Memory": "8"}, "high")]
    for headers, tier in cases:
        resp = await client.get("/v1/scenes/mini-a-scene/glb", headers=headers,
                                allow_redirects=False)
        assert resp.status == 302 and resp.headers["Location"] == tiers[tier]["url"]
        assert "Save-Data" in resp.headers["Vary"] and "ECT" in resp.headers["Accept-CH"]
    resp = await client.get("/v1/scenes/mini-a-scene/glb?tier=low", allow_redirects=False)
    assert resp.headers["Location"] == tiers["low"]["url"]
    _, body = await get_json(client, "/v1/scenes/mini-a-scene/glb?tier=ultra", status=400)
    assert_error(body, "tier_unknown", "tier")


async def test_cell_query(client):
    lat, lon = 29.5572, 106.5770
    for res in (7, 8):
        cell = h3.latlng_to_cell(lat, lon, res)
        resp, doc = await get_json(client, f"/v1/cells/{cell}")
        assert doc["resolution"] == res
        assert [t["id"] for t in doc["tours"]] == ["mini"]
        assert "mini-a" in [s["id"] for s in doc["stops"]]
        assert "mini-a" in [a["id"] for a in doc["anchors"]]
        assert resp.headers["Cache-Control"].startswith("public")
    far = h3.latlng_to_cell(48.85, 2.35, 8)
    _, empty = await get_json(client, f"/v1/cells/{far}")
    assert empty["tours"] == empty["stops"] == empty["anchors"] == []
    fine = h3.latlng_to_cell(lat, lon, 9)
    _, body = await get_json(client, f"/v1/cells/{fine}", status=400)
    assert_error(body, "cell_invalid", "cell")
    assert "resolution 9" in body["error"]["message"]
    _, body = await get_json(client, "/v1/cells/not-a-cell", status=400)
    assert_error(body, "cell_invalid", "cell")


async def test_pack_lists_every_file_with_totals(client):
    _, pack = await get_json(client, "/v1/tours/mini/pack?lang=zh-Hans&tier=low")
    assert pack["language"] == "zh-Hans" and pack["tier"] == "low"
    assert pack["total_bytes"] == sum(f["bytes"] for f in pack["files"])
    roles = [f["role"] for f in pack["files"]]
    assert roles.count("scene") == 1 and roles.count("audio") == 2
    assert roles.count("subtitles") == 2
    _, scene = await get_json(client, "/v1/scenes/mini-a-scene")
    low = next(v for v in scene["variants"] if v["tier"] == "low")
    assert low["url"] in [f["url"] for f in pack["files"]]
    import hashlib

    for f in pack["files"]:  # each listed hash is what the URL serves
        resp = await client.get(f["url"])
        body = await resp.read()
        assert hashlib.sha256(body).hexdigest() == f["sha256"], f["url"]
        assert len(body) == f["bytes"]
    _, body = await get_json(client, "/v1/tours/mini/pack?tier=huge", status=400)
    assert_error(body, "tier_unknown", "tier")


async def test_tileset_is_3d_tiles_1_1(client):
    _, ts = await get_json(client, "/v1/tours/mini/tileset.json")
    assert ts["asset"]["version"] == "1.1"
    root = ts["root"]
    west, south, east, north, hmin, hmax = root["boundingVolume"]["region"]
    assert west < east and south < north and hmin < hmax
    tile = root["children"][0]
    assert len(tile["transform"]) == 16
    chain = []
    while tile:
        chain.append(tile)
        assert tile["content"]["uri"].endswith(".glb") and tile["refine"] == "REPLACE"
        tile = (tile.get("children") or [None])[0]
    errors = [t["geometricError"] for t in chain]
    assert len(chain) == 3 and errors == sorted(errors, reverse=True) and errors[-1] == 0
    assert errors[0] > 0 and ts["geometricError"] >= errors[0]


async def test_ops_endpoints(client):
    _, health = await get_json(client, "/v1/health")
    assert health["status"] == "ok" and health["tours"] == 1
    await client.get("/v1/tours")
    resp = await client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200 and "tourserver_http_requests_total" in text
    assert 'route="/v1/tours"' in text
    resp = await client.get("/v1/openapi.yaml")
    assert resp.status == 200 and "openapi: 3" in await resp.text()
    _, schema = await get_json(client, "/v1/schema/tour.json")
    assert schema["$schema"].startswith("https://json-schema.org/")


async def test_cors_for_public_reads(client):
    resp = await client.get("/v1/tours", headers={"Origin": "https://example.org"})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    pre = await client.options("/c/" + "0" * 64 + ".glb", headers={
        "Origin": "https://example.org", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "Range"})
    assert pre.status == 204 and "Range" in pre.headers["Access-Control-Allow-Headers"]


async def test_wrong_method_and_unknown_route(client):
    resp = await client.post("/v1/tours", data=b"x")
    assert resp.status == 405
    assert_error(await resp.json(), "method_not_allowed")
    _, body = await get_json(client, "/v2/whatever", status=404)
    assert_error(body, "not_found")


async def test_oversized_body_is_refused(client):
    resp = await client.post("/v1/tours", data=b"x" * (1024 * 1024))
    assert 400 <= resp.status < 500


async def test_documents_are_sent_gzip_compressed_to_clients_that_accept_it(client):
    import gzip
    import json

    url = "/v1/tours/mini?lang=en"
    plain = await client.get(url, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    body = await plain.read()
    packed = await client.get(url, headers={"Accept-Encoding": "gzip, br"},
                              auto_decompress=False)
    assert packed.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in packed.headers["Vary"]
    raw = await packed.read()
    assert len(raw) < len(body) and json.loads(gzip.decompress(raw)) == json.loads(body)
    # two representations, two validators, each revalidates on its own
    assert packed.headers["ETag"] != plain.headers["ETag"]
    again = await client.get(url, headers={"Accept-Encoding": "gzip",
                                           "If-None-Match": packed.headers["ETag"]})
    assert again.status == 304
    refused = await client.get(url, headers={"Accept-Encoding": "gzip;q=0, *"})
    assert "Content-Encoding" not in refused.headers
