"""Health, metrics, the OpenAPI document and the manifest schema."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from importlib import resources

from aiohttp import web

from tourserver import __version__
from tourserver.http.keys import CATALOG, LIVE, METRICS
from tourserver.http.responses import json_response
from tourserver.model.manifest import tour_schema

_OPENAPI = resources.files("tourserver.http").joinpath("openapi.yaml").read_bytes()


async def health(request: web.Request) -> web.Response:
    published = request.app[CATALOG]
    catalog = published.catalog
    loaded_at = datetime.fromtimestamp(published.loaded_at, UTC)
    return json_response(request, {"status": "ok", "version": __version__,
                                   "build": catalog.build_id, "tours": len(catalog.tours),
                                   "loaded_at": loaded_at.isoformat(timespec="seconds")
                                   .replace("+00:00", "Z"),
                                   "reloading": published.reloading,
                                   "worker": os.getpid()},
                         cache="no-store")


def refresh_live_gauges(app: web.Application) -> None:
    """Count this process's open live sockets (in rooms, and replays) into the metrics."""
    hub = app[LIVE].hub
    rooms = list(hub.rooms.values())
    app[METRICS].set_live(sum(len(room.conns) for room in rooms) + len(hub.replays),
                          len(rooms))


async def metrics(request: web.Request) -> web.Response:
    refresh_live_gauges(request.app)
    # With several workers, rendering reads every worker's metrics file: off the loop.
    body, content_type = await asyncio.get_running_loop().run_in_executor(
        None, request.app[METRICS].render)
    return web.Response(body=body, headers={"Content-Type": content_type,
                                            "Cache-Control": "no-store"})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_OPENAPI, content_type="application/yaml",
                        headers={"Cache-Control": "public, max-age=300"})


async def schema(request: web.Request) -> web.Response:
    return json_response(request, tour_schema(), content_type="application/schema+json")
