"""GET/HEAD /c/{sha256}.{ext}: immutable, content-addressed files.

Written here rather than with aiohttp's FileResponse because we need a strong ETag (the
content hash), our own MIME table, If-Range compared against that ETag, and JSON errors;
the body still goes out with sendfile.
"""

from __future__ import annotations

import asyncio
import os
import re

from aiohttp import web

from tourserver.errors import NotFound, RangeNotSatisfiable
from tourserver.http.keys import catalog_of
from tourserver.http.responses import etag_matches
from tourserver.store.catalog import Catalog

IMMUTABLE = "public, max-age=31536000, immutable"
NAME_RE = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]{2,4}$")
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One byte range (start, end inclusive), or None to send the whole file.

    Multi-range requests are answered with the whole file (allowed by RFC 9110 §14.2);
    an unsatisfiable or malformed range raises RangeNotSatisfiable.
    """
    header = header.strip()
    if "," in header:
        return None
    m = _RANGE_RE.match(header)
    if not m or (not m.group(1) and not m.group(2)):
        raise RangeNotSatisfiable(f"malformed Range header {header[:64]!r}", size)
    first, last = m.group(1), m.group(2)
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if start >= size or (last and int(last) < start):
            raise RangeNotSatisfiable(f"range {header[:64]} is outside 0-{size - 1}", size)
    else:  # suffix range: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable("an empty suffix range selects nothing", size)
        start, end = max(0, size - length), size - 1
    return start, end


async def _send_file(request: web.Request, response: web.StreamResponse, path: str,
                     offset: int, count: int) -> None:
    writer = await response.prepare(request)
    if request.method == "HEAD" or count == 0:
        await response.write_eof()
        return
    transport = request.transport
    loop = asyncio.get_running_loop()
    with open(path, "rb") as fobj:
        if transport is not None and transport.get_extra_info("sslcontext") is None:
            await writer.drain()  # headers first, then the kernel copies the body
            try:
                await loop.sendfile(transport, fobj, offset, count)
                await response.write_eof()
                return
            except NotImplementedError:
                pass
        fobj.seek(offset)
        remaining = count
        while remaining > 0:
            chunk = await loop.run_in_executor(None, fobj.read, min(256 * 1024, remaining))
            if not chunk:
                break
            await response.write(chunk)
            remaining -= len(chunk)
    await response.write_eof()


async def get_content(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    catalog: Catalog = catalog_of(request)  # once: a reload may swap it mid-request
    if not NAME_RE.match(name):
        raise NotFound("content names are <sha256>.<ext>", field="name")
    ref, path = catalog.blob_path(name)
    size = os.stat(path).st_size
    etag = f'"{ref.sha256}"'
    headers = {
        "ETag": etag,
        "Cache-Control": IMMUTABLE,
        "Accept-Ranges": "bytes",
        "Content-Type": ref.mime,
        "X-Content-Type-Options": "nosniff",
    }
    if etag_matches(request, etag):
        return web.Response(status=304, headers=headers)
    byte_range = None
    range_header = request.headers.get("Range")
    if range_header is not None:
        if_range = request.headers.get("If-Range")
        # If-Range with another validator (or a date: our files have none) means
        # "the whole thing", per RFC 9110 §13.1.5.
        if if_range is None or if_range.strip() == etag:
            try:
                byte_range = parse_range(range_header, size)
            except RangeNotSatisfiable as exc:
                exc.headers = {"Content-Range": f"bytes */{size}"}  # type: ignore[attr-defined]
                raise
    response = web.StreamResponse(status=200, headers=headers)
    if byte_range is None:
        response.content_length = size
        offset, count = 0, size
    else:
        start, end = byte_range
        response.set_status(206)
        response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        response.content_length = end - start + 1
        offset, count = start, end - start + 1
    await _send_file(request, response, str(path), offset, count)
    return response
