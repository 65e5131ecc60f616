"""Middlewares: errors as JSON, CORS preflight, metrics, access log; and install_headers,
which puts CORS and security headers on every response.

The access log records the route template, status, time and size: never the raw path or
query (a cell id or coordinates could be in them) and never the client address.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

from tourserver.errors import RangeNotSatisfiable, TooManyRequests, TourError
from tourserver.http.keys import METRICS, SETTINGS
from tourserver.http.responses import error_response, tour_error_response
from tourserver.logs import AccessLog

access_log = AccessLog("tourserver.access")
log = logging.getLogger("tourserver.http")

_CORS_ALLOW_HEADERS = ("Range, If-None-Match, If-Range, Save-Data, ECT, Device-Memory, "
                       "Authorization, Content-Type")
# What a viewer on another origin (CesiumJS, 3DTilesRendererJS, a fetch() with progress)
# reads beyond the CORS-safelisted ones: validators, ranges, sizes, redirects, back-off.
_CORS_EXPOSE = ("ETag, Content-Range, Accept-Ranges, Content-Length, Content-Encoding, "
                "Location, Retry-After, Vary, X-Tourserver-Tier")
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large",
               400: "bad_request", 431: "headers_too_large", 414: "uri_too_long"}


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    size = 0
    try:
        response = await handler(request)
        status = response.status
        size = response.content_length or 0
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        route = _route_name(request)
        request.app[METRICS].observe(request.method, route, status, elapsed, size)
        if request.app[SETTINGS].access_log:
            access_log.request({"method": request.method, "route": route, "status": status,
                                "ms": round(elapsed * 1000, 3), "bytes": size})


@web.middleware
async def errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RangeNotSatisfiable as exc:
        return error_response(416, exc.code, exc.message, exc.field,
                              headers={"Content-Range": f"bytes */{exc.size}"})
    except TooManyRequests as exc:
        return error_response(429, exc.code, exc.message, exc.field,
                              headers={"Retry-After": str(exc.retry_after_s)})
    except TourError as exc:
        # server-side detail (a path, say) stays in the server log
        if exc.status >= 500 and exc.status != 503:
            log.error("%s: %s", exc.code, exc.message)
            return error_response(exc.status, exc.code,
                                  "server error; the server log has details")
        return tour_error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.status != 404 else f"no route for {request.path[:200]!r}"
        if exc.status == 405:
            message = f"{request.method} is not allowed here"
        return error_response(exc.status, code, message,
                              headers={k: v for k, v in exc.headers.items() if k == "Allow"})
    except (ConnectionResetError, TimeoutError):
        raise
    except Exception:
        # Full detail in the server log; the client gets a clean JSON 500.
        log.exception("unhandled error in %s", _route_name(request))
        return error_response(500, "internal", "internal error; the server log has details")


@web.middleware
async def headers(request: web.Request, handler) -> web.StreamResponse:
    """CORS preflight. Every other response gets its headers from install_headers."""
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response = web.Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, HEAD, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = _CORS_ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = "86400"
        return response
    return await handler(request)


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    # Runs as the response is prepared, before its headers are sent: so a handler that
    # streams (the /c/ files, the event log, the 101 of a WebSocket) gets them too, as
    # does any 206, 304, HEAD or error. setdefault: a handler's own value wins.
    h = response.headers
    h.setdefault("Access-Control-Allow-Origin", request.app[SETTINGS].cors_origin)
    h.setdefault("Access-Control-Expose-Headers", _CORS_EXPOSE)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "no-referrer")


def install_headers(app: web.Application) -> None:
    """CORS and security headers on every response of `app` (aiohttp's public
    on_response_prepare signal); the `headers` middleware answers preflights."""
    if _add_headers not in app.on_response_prepare:
        app.on_response_prepare.append(_add_headers)
