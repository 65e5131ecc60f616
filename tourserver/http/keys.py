"""Typed application state (aiohttp AppKey), shared by the HTTP modules."""

from aiohttp import web

from tourserver.config import Settings
from tourserver.http.metrics import HttpMetrics
from tourserver.live.service import LiveService
from tourserver.store.catalog import Catalog

CATALOG = web.AppKey("catalog", Catalog)
SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", HttpMetrics)
LIVE = web.AppKey("live", LiveService)
