"""GET/HEAD /c/{sha256}.{ext}: immutable, content-addressed files.

Written here rather than with aiohttp's FileResponse because we need a strong ETag (the
content hash), our own MIME table, ranges and If-Range to the letter of RFC 9110, and JSON
errors; the body still goes out with sendfile. The catalog knows every file's size, so a
request never stats on the event loop; the file is opened (and closed) in a thread, and
only when there is a body to send (not for HEAD or 304).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from tourserver.errors import NotFound, RangeNotSatisfiable, TourError
from tourserver.http.keys import catalog_of
from tourserver.http.responses import etag_matches
from tourserver.store.catalog import Catalog

IMMUTABLE = "public, max-age=31536000, immutable"
NAME_RE = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]{2,4}$")
# More parts than this is a scraper or an amplification attempt, not a viewer: the whole
# file is sent instead (RFC 9110 §14.2 lets a server ignore Range).
MAX_RANGES = 16
_SPEC_RE = re.compile(r"(\d*)-(\d*)")
_MAX_DIGITS = 30  # beyond any file size; keeps int() away from 8 KB digit strings
_CHUNK = 256 * 1024

Segment = bytes | tuple[int, int]  # literal bytes, or (offset, count) of the file


class ContentUnavailable(TourError):
    """The catalog lists a file the blob store does not hold (or holds damaged)."""

    status = 500
    code = "content_unavailable"


def _position(digits: str) -> int:
    return int(digits) if len(digits) <= _MAX_DIGITS else 10 ** _MAX_DIGITS


def parse_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """The byte ranges to send (start, end inclusive, in the order asked), or None for
    the whole file (RFC 9110 §14): another unit than `bytes` is ignored; so are more than
    MAX_RANGES ranges and overlapping ones (a server may); ranges past the end are dropped
    and only if none is left is it a 416; a malformed byte range is a 416 too.
    """
    unit, equals, spec = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":  # range units are case-insensitive
        return None
    if size == 0:
        return None  # nothing to select from: the (empty) whole file
    # Empty list elements ("0-1,,4-5") are allowed and skipped (RFC 9110 §5.6.1).
    specs = [s.strip() for s in spec.split(",") if s.strip()]
    if len(specs) > MAX_RANGES:
        return None
    ranges: list[tuple[int, int]] = []
    for s in specs:
        m = _SPEC_RE.fullmatch(s)
        if m is None or not (m.group(1) or m.group(2)):
            raise RangeNotSatisfiable(f"malformed Range header {header[:64]!r}", size)
        first, last = m.group(1), m.group(2)
        if first:
            start = _position(first)
            if last and _position(last) < start:
                raise RangeNotSatisfiable(f"range {s[:40]} ends before it starts", size)
            if start >= size:
                continue  # unsatisfiable: others may still be
            ranges.append((start, min(_position(last), size - 1) if last else size - 1))
        elif _position(last) > 0:  # suffix range: the last N bytes
            ranges.append((max(0, size - _position(last)), size - 1))
    if not ranges:
        raise RangeNotSatisfiable(f"no range of {header[:64]!r} is inside 0-{size - 1}", size)
    ordered = sorted(ranges)
    if any(b[0] <= a[1] for a, b in zip(ordered, ordered[1:], strict=False)):
        return None
    return ranges


def _wanted_ranges(request: web.Request, etag: str, size: int) -> list[tuple[int, int]] | None:
    # Range is defined for GET only: HEAD answers as a GET without Range would (§14.2).
    range_header = request.headers.get("Range")
    if request.method != "GET" or range_header is None:
        return None
    # If-Range holds a strong validator equal to ours, or the whole file is sent: another
    # ETag, a weak one or a date (our files have no Last-Modified) is stale (§13.1.5).
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != etag:
        return None
    return parse_ranges(range_header, size)


def _multipart(ranges: list[tuple[int, int]], size: int,
               mime: str) -> tuple[str, list[Segment], int]:
    """multipart/byteranges (RFC 9110 §14.6): the boundary, the body as segments, its length."""
    boundary = secrets.token_hex(16)
    segments: list[Segment] = []
    for start, end in ranges:
        segments.append(f"--{boundary}\r\nContent-Type: {mime}\r\n"
                        f"Content-Range: bytes {start}-{end}/{size}\r\n\r\n".encode())
        segments.append((start, end - start + 1))
        segments.append(b"\r\n")
    segments.append(f"--{boundary}--\r\n".encode())
    length = sum(len(s) if isinstance(s, bytes) else s[1] for s in segments)
    return boundary, segments, length


def _open_checked(path: Path, size: int) -> BinaryIO:
    """Open the blob (in a thread): missing or not the size the catalog says is our fault."""
    try:
        fobj = open(path, "rb")  # noqa: SIM115 - closed by the caller, in a thread too
    except FileNotFoundError:
        raise ContentUnavailable(f"blob {path} is listed in the catalog but missing") from None
    actual = os.fstat(fobj.fileno()).st_size
    if actual != size:
        fobj.close()
        raise ContentUnavailable(f"blob {path} holds {actual} bytes, the catalog says {size}")
    return fobj


async def _send(request: web.Request, response: web.StreamResponse, fobj: BinaryIO,
                segments: list[Segment]) -> None:
    writer = await response.prepare(request)  # StreamResponse: the headers go out now
    assert writer is not None  # prepare() gives None only for a response already ended
    loop = asyncio.get_running_loop()
    # The kernel copies the file to the socket itself, which it cannot do under TLS.
    direct = request.transport
    if direct is not None and direct.get_extra_info("sslcontext") is not None:
        direct = None
    for segment in segments:
        if isinstance(segment, bytes):
            await response.write(segment)
            continue
        offset, count = segment
        if direct is not None:
            await writer.drain()  # what was written first, then the kernel copies the file
            try:
                await loop.sendfile(direct, fobj, offset, count)
                continue
            except NotImplementedError:
                direct = None
        fobj.seek(offset)
        remaining = count
        while remaining > 0:
            chunk = await loop.run_in_executor(None, fobj.read, min(_CHUNK, remaining))
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
    size = ref.bytes  # from the catalog: no stat per request
    etag = f'"{ref.sha256}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    if etag_matches(request, etag):  # before Range: a 304 ignores it (§13.2.2)
        return web.Response(status=304, headers=headers)
    headers["Accept-Ranges"] = "bytes"
    ranges = _wanted_ranges(request, etag, size)
    response = web.StreamResponse(status=200, headers=headers)
    segments: list[Segment]
    if ranges is None:
        response.headers["Content-Type"] = ref.mime
        segments = [(0, size)]
        response.content_length = size
    elif len(ranges) == 1:
        (start, end), = ranges
        response.set_status(206)
        response.headers["Content-Type"] = ref.mime
        response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        segments = [(start, end - start + 1)]
        response.content_length = end - start + 1
    else:
        boundary, segments, length = _multipart(ranges, size, ref.mime)
        response.set_status(206)
        response.headers["Content-Type"] = f"multipart/byteranges; boundary={boundary}"
        response.content_length = length
    if request.method == "HEAD" or size == 0:
        await response.prepare(request)
        await response.write_eof()
        return response
    loop = asyncio.get_running_loop()
    fobj = await loop.run_in_executor(None, _open_checked, path, size)
    try:
        await _send(request, response, fobj, segments)
    finally:
        await loop.run_in_executor(None, fobj.close)
    return response
