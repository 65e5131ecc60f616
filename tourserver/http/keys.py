"""Typed application state (aiohttp AppKey), shared by the HTTP modules."""

from aiohttp import web

from tourserver.config import Settings
from tourserver.http.metrics import HttpMetrics
from tourserver.http.reload import Published, Reloader
from tourserver.live.service import LiveService
from tourserver.store.catalog import Catalog

CATALOG = web.AppKey("catalog", Published)  # a holder: hot reload swaps what it holds
RELOADER = web.AppKey("reloader", Reloader)  # only when the app watches its data directory
SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", HttpMetrics)
LIVE = web.AppKey("live", LiveService)


def catalog_of(request: web.Request) -> Catalog:
    """The catalog a request answers from. Read it once per request and keep it: a reload
    may swap the holder's catalog while the request runs."""
    return request.app[CATALOG].catalog
