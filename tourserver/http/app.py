"""create_app(): the aiohttp application, its routes and its state."""

from __future__ import annotations

from aiohttp import web

from tourserver.config import Settings
from tourserver.http import api, content, ops
from tourserver.http.keys import CATALOG, METRICS, SETTINGS
from tourserver.http.metrics import HttpMetrics
from tourserver.http.middleware import errors, headers, observe
from tourserver.store.catalog import Catalog


def create_app(settings: Settings, catalog: Catalog) -> web.Application:
    app = web.Application(middlewares=[observe, headers, errors],
                          client_max_size=settings.limits.max_request_bytes)
    app[SETTINGS] = settings
    app[CATALOG] = catalog
    app[METRICS] = HttpMetrics()
    r = app.router
    r.add_get("/", ops.index)
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
    return app
