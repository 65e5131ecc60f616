"""create_app(): the aiohttp application, its routes and its state."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from tourserver.config import Settings
from tourserver.http import api, content, events, ops
from tourserver.http import web as webapp
from tourserver.http.keys import CATALOG, LIVE, METRICS, RELOADER, SETTINGS
from tourserver.http.metrics import HttpMetrics
from tourserver.http.middleware import errors, headers, install_headers, observe
from tourserver.http.reload import Published, Reloader
from tourserver.live.protocol import LiveLimits
from tourserver.live.service import LiveConfig, LiveService
from tourserver.store.catalog import Catalog


def live_config(settings: Settings) -> LiveConfig:
    live = settings.live
    limits = LiveLimits(max_frame_bytes=live.max_frame_bytes,
                        history_window=live.history_window,
                        cue_horizon_ms=live.cue_horizon_s * 1000.0,
                        heartbeat_s=live.heartbeat_s)
    return LiveConfig(broker_url=live.broker_url, limits=limits,
                      allowed_origins=live.allowed_origins,
                      tickets_per_minute=live.tickets_per_minute,
                      unavailable=None if live.broker_url or settings.workers <= 1 else
                      "live events with --workers above 1 need a shared broker: "
                      "serve --broker redis://HOST:PORT/DB")


async def _start_live(app: web.Application) -> None:
    await app[LIVE].start()


async def _stop_live(app: web.Application) -> None:
    await app[LIVE].close()  # sockets get 1001 after their queued frames


LIVE_GAUGE_S = 5.0  # how stale another worker's live socket count may be in a scrape


async def _live_gauges(app: web.Application) -> AsyncIterator[None]:
    async def refresh() -> None:
        while True:
            ops.refresh_live_gauges(app)
            await asyncio.sleep(LIVE_GAUGE_S)

    task = asyncio.get_running_loop().create_task(refresh(), name="live-gauges")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _start_reloader(app: web.Application) -> None:
    await app[RELOADER].start()


async def _stop_reloader(app: web.Application) -> None:
    await app[RELOADER].stop()


def create_app(settings: Settings, catalog: Catalog, *,
               reload_poll_s: float | None = None) -> web.Application:
    """The application serving `catalog`. With `reload_poll_s` (seconds; 0: only when
    poked, as by SIGHUP) it also swaps in the builds published to `settings.data_dir`
    (hot reload, see http.reload); None serves `catalog` for good."""
    app = web.Application(middlewares=[observe, headers, errors],
                          client_max_size=settings.limits.max_request_bytes)
    install_headers(app)  # CORS and security headers, streamed responses included
    app[SETTINGS] = settings
    published = Published(catalog)
    app[CATALOG] = published
    app[METRICS] = HttpMetrics()
    app[webapp.WEB] = webapp.WebFiles(settings.node_modules)
    live = app[LIVE] = LiveService(live_config(settings), settings.data_dir, catalog.tours)
    app.on_startup.append(_start_live)
    app.on_shutdown.append(_stop_live)
    app.cleanup_ctx.append(_live_gauges)
    if reload_poll_s is not None:
        app[RELOADER] = Reloader(published, settings.data_dir,
                                 on_swap=lambda new: live.use_tours(new.tours),
                                 poll_s=reload_poll_s)
        app.on_startup.append(_start_reloader)
        app.on_shutdown.append(_stop_reloader)
    r = app.router
    r.add_get("/", webapp.index)
    r.add_get("/host", webapp.host)
    r.add_get("/app/{name}", webapp.app_file)
    r.add_get("/sw.js", webapp.service_worker)
    r.add_get("/vendor/{spec}/{path:.+}", webapp.vendor_file)
    r.add_get("/v1/health", ops.health)
    r.add_get("/metrics", ops.metrics)
    r.add_get("/v1/openapi.yaml", ops.openapi)
    r.add_get("/v1/schema/tour.json", ops.schema)
    r.add_get("/v1/tours", api.list_tours)
    r.add_get("/v1/tours/{tour_id}", api.get_tour)
    r.add_get("/v1/tours/{tour_id}/tileset.json", api.get_tileset)
    r.add_get("/v1/tours/{tour_id}/pack", api.get_pack)
    r.add_get("/v1/anchors/{anchor_id}", api.get_anchor)
    r.add_get("/v1/anchors/{anchor_id}/geopose", api.get_geopose)
    r.add_get("/v1/scenes/{scene_id}", api.get_scene)
    r.add_get("/v1/scenes/{scene_id}/glb", api.get_scene_glb)
    r.add_get("/v1/cells/{cell}", api.get_cell)
    r.add_get("/c/{name}", content.get_content)
    r.add_post("/v1/events", events.create_event)
    r.add_get("/v1/events", events.list_events)
    r.add_get("/v1/events/{event_id}", events.get_event)
    r.add_post("/v1/events/{event_id}/tickets", events.issue_ticket)
    r.add_post("/v1/events/{event_id}/end", events.end_event)
    r.add_get("/v1/events/{event_id}/log", events.get_log)
    r.add_get("/v1/events/{event_id}/live", events.live)
    return app
