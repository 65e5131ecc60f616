"""Health, metrics, the OpenAPI document and the manifest schema."""

from __future__ import annotations

import os
from importlib import resources

from aiohttp import web

from tourserver import __version__
from tourserver.http.keys import CATALOG, METRICS
from tourserver.http.responses import json_response
from tourserver.model.manifest import tour_schema

_OPENAPI = resources.files("tourserver.http").joinpath("openapi.yaml").read_bytes()


async def health(request: web.Request) -> web.Response:
    catalog = request.app[CATALOG]
    return json_response(request, {"status": "ok", "version": __version__,
                                   "build": catalog.build_id, "tours": len(catalog.tours),
                                   "worker": os.getpid()},
                         cache="no-store")


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": content_type,
                                            "Cache-Control": "no-store"})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_OPENAPI, content_type="application/yaml",
                        headers={"Cache-Control": "public, max-age=300"})


async def schema(request: web.Request) -> web.Response:
    return json_response(request, tour_schema(), content_type="application/schema+json")


async def index(request: web.Request) -> web.Response:
    catalog = request.app[CATALOG]
    items = "".join(
        f'<li><a href="/v1/tours/{t.id}">{_esc(t.title.get(t.default_language, t.id))}</a> '
        f"({len(t.stops)} stops, {', '.join(t.languages)})</li>"
        for t in catalog.tours.values())
    page = (f"<!doctype html><meta charset=utf-8><title>tourserver</title>"
            f"<h1>tourserver {__version__}</h1><p>Tours:</p><ul>{items}</ul>"
            '<p><a href="/v1/openapi.yaml">API (OpenAPI)</a> · '
            '<a href="/v1/health">health</a></p>')
    return web.Response(text=page, content_type="text/html",
                        headers={"Content-Security-Policy": "default-src 'none'"})


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
