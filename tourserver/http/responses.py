"""JSON responses with strong ETags and conditional GET, shared by every handler."""

from __future__ import annotations

from aiohttp import web

from tourserver.errors import TourError
from tourserver.store.catalog import Rendered, json_bytes, render

API_CACHE = "public, max-age=60"


def etag_matches(request: web.Request, etag: str) -> bool:
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    # Weak comparison (RFC 9110 §13.1.2): W/"x" matches "x".
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return etag in tags


def accepts_gzip(request: web.Request) -> bool:
    """Whether Accept-Encoding allows gzip (RFC 9110 §12.5.3): named, or `*`, without q=0."""
    header = request.headers.get("Accept-Encoding")
    if not header:
        return False
    allowed: dict[str, bool] = {}
    for item in header.lower().split(","):
        name, _, params = item.strip().partition(";")
        q = params.strip().removeprefix("q=").strip() if params.strip().startswith("q=") else "1"
        try:
            allowed[name.strip()] = float(q) > 0
        except ValueError:
            allowed[name.strip()] = False
    if "gzip" in allowed:
        return allowed["gzip"]
    return allowed.get("*", False)


def json_response(request: web.Request, body: object, *, content_type: str = "application/json",
                  cache: str = API_CACHE, status: int = 200) -> web.Response:
    """A JSON response with a strong ETag; `body` may be a document or an already Rendered one
    (sent gzip-compressed, compressed once, when it has a compressed copy and the client
    accepts it: each representation has its own ETag)."""
    rendered = body if isinstance(body, Rendered) else render(body)
    data, etag = rendered.body, rendered.etag
    headers = {"ETag": etag, "Cache-Control": cache, "Vary": "Accept-Encoding"}
    if rendered.gzip is not None and accepts_gzip(request):
        data, etag = rendered.gzip, rendered.gzip_etag
        headers.update({"ETag": etag, "Content-Encoding": "gzip"})
    # Conditional GET only: a POST that did something must say so (RFC 9110 §13.1.2).
    if status == 200 and request.method in ("GET", "HEAD") and etag_matches(request, etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=data, status=status, headers=headers,
                        content_type=content_type.split(";")[0], charset="utf-8")


def error_body(code: str, message: str, field: str | None = None) -> dict:
    err: dict = {"code": code, "message": message}
    if field:
        err["field"] = field
    return {"error": err}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict | None = None) -> web.Response:
    return web.Response(body=json_bytes(error_body(code, message, field)), status=status,
                        content_type="application/json", charset="utf-8",
                        headers={"Cache-Control": "no-store", **(headers or {})})


def tour_error_response(exc: TourError) -> web.Response:
    return error_response(exc.status, exc.code, exc.message, exc.field)
