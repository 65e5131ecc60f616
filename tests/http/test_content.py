"""/c/{sha256}.{ext}: MIME types, immutability, ranges, conditionals, traversal."""

from __future__ import annotations

import hashlib

import pytest

from tourserver.config import Settings
from tourserver.http.app import create_app
from tourserver.store.catalog import load_published


@pytest.fixture()
def catalog(mini_data):
    return load_published(mini_data)


@pytest.fixture()
async def client(aiohttp_client, mini_data, mini_root, catalog):
    settings = Settings(data_dir=mini_data, content_root=mini_root, access_log=False)
    return await aiohttp_client(create_app(settings, catalog))


def name_of(catalog, ext):
    return next(n for n in catalog.blobs if n.endswith("." + ext))


@pytest.mark.parametrize(("ext", "mime"), [("glb", "model/gltf-binary"), ("m4a", "audio/mp4"),
                                           ("mp3", "audio/mpeg"), ("vtt", "text/vtt")])
async def test_mime_types_and_immutable_caching(client, catalog, ext, mime):
    name = name_of(catalog, ext)
    resp = await client.get(f"/c/{name}")
    body = await resp.read()
    assert resp.status == 200
    assert resp.headers["Content-Type"].split(";")[0] == mime
    assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert resp.headers["ETag"] == f'"{hashlib.sha256(body).hexdigest()}"'
    assert not resp.headers["ETag"].startswith("W/")
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert name.startswith(hashlib.sha256(body).hexdigest())


async def test_head_has_length_and_no_body(client, catalog):
    name = name_of(catalog, "glb")
    resp = await client.head(f"/c/{name}")
    assert resp.status == 200 and await resp.read() == b""
    assert int(resp.headers["Content-Length"]) == catalog.blobs[name].bytes


async def test_safari_probe_and_ranges(client, catalog):
    name = name_of(catalog, "m4a")
    full = await (await client.get(f"/c/{name}")).read()
    size = len(full)
    for header, start, end in [("bytes=0-1", 0, 1), ("bytes=5-", 5, size - 1),
                               ("bytes=-10", size - 10, size - 1),
                               (f"bytes=3-{size + 1000}", 3, size - 1)]:
        resp = await client.get(f"/c/{name}", headers={"Range": header})
        assert resp.status == 206, header
        assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
        assert await resp.read() == full[start:end + 1]


@pytest.mark.parametrize("header", ["bytes=999999-", "bytes=5-2", "bytes=-0", "bytes=x-y",
                                    "bytes=999999-,-0"])
async def test_unsatisfiable_range_is_416(client, catalog, header):
    name = name_of(catalog, "m4a")
    size = catalog.blobs[name].bytes
    resp = await client.get(f"/c/{name}", headers={"Range": header})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{size}"
    assert (await resp.json())["error"]["code"] == "range_not_satisfiable"


async def test_if_range_and_if_none_match(client, catalog):
    name = name_of(catalog, "glb")
    etag = f'"{catalog.blobs[name].sha256}"'
    resp = await client.get(f"/c/{name}", headers={"Range": "bytes=0-3", "If-Range": etag})
    assert resp.status == 206
    resp = await client.get(f"/c/{name}", headers={"Range": "bytes=0-3", "If-Range": '"old"'})
    assert resp.status == 200 and len(await resp.read()) == catalog.blobs[name].bytes
    resp = await client.get(f"/c/{name}", headers={"If-None-Match": etag})
    assert resp.status == 304


async def test_multi_range_is_multipart(client, catalog):
    # parsed part by part in tests/http/test_http_letter.py
    name = name_of(catalog, "glb")
    resp = await client.get(f"/c/{name}", headers={"Range": "bytes=0-1,4-5"})
    assert resp.status == 206
    assert resp.headers["Content-Type"].startswith("multipart/byteranges; boundary=")


@pytest.mark.parametrize("path", [
    "/c/../../../../etc/passwd", "/c/..%2f..%2f..%2fetc%2fpasswd", "/c/%2e%2e/%2e%2e/etc/passwd",
    "/c/" + "0" * 64 + ".glb", "/c/" + "a" * 64 + ".exe", "/c/ABC.glb", "/c/blobs",
    "/c/%00.glb", "/c/....//....//etc/passwd", "/c/..\\..\\etc\\passwd",
])
async def test_traversal_and_unknown_names_are_404(client, path):
    resp = await client.get(path)
    assert resp.status in (400, 404)
    body = await resp.read()
    assert b"root:" not in body
    assert (await resp.json(content_type=None))["error"]["code"] in ("not_found", "bad_request")
