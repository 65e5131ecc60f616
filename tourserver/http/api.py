"""JSON API handlers: parse the request, ask the catalog, serialise. Nothing else.

Each handler reads the catalog once (`catalog_of`) and uses that object throughout: a hot
reload may swap the served catalog while a request runs."""

from __future__ import annotations

from aiohttp import web

from tourserver.errors import InvalidRequest
from tourserver.http.keys import catalog_of
from tourserver.http.responses import json_response
from tourserver.model import cells
from tourserver.model.anchors import GEOPOSE_MEDIA_TYPE
from tourserver.model.variants import CLIENT_HINTS, choose_tier
from tourserver.pipeline.presets import DEFAULT_TIER, TIER_NAMES
from tourserver.store.blobs import BlobRef

CELL_CACHE = "public, max-age=300"  # cells are coarse and public: shared caches may keep them
# Asks browsers to send the hints the tier is chosen from (they send ECT and Device-Memory
# only to origins that asked; Save-Data always). No Critical-CH: see README, Variant choice.
ACCEPT_CH = ", ".join(CLIENT_HINTS)


def _query(request: web.Request, name: str, max_len: int = 64) -> str | None:
    value = request.query.get(name)
    if value is not None and (not value or len(value) > max_len):
        raise InvalidRequest(f"query parameter {name!r} is empty or too long", field=name)
    return value


async def list_tours(request: web.Request) -> web.Response:
    catalog = catalog_of(request)
    lang = _query(request, "lang")
    tours = [catalog.tour_summary(t, catalog.language(t, lang) if lang else None)
             for t in catalog.tours.values()]
    return json_response(request, {"tours": tours, "build": catalog.build_id})


async def get_tour(request: web.Request) -> web.Response:
    catalog = catalog_of(request)
    tour = catalog.tour(request.match_info["tour_id"])
    lang = catalog.language(tour, _query(request, "lang"))  # normalised: a bounded cache key
    doc = catalog.cached(("tour", tour.id, lang), lambda: catalog.tour_document(tour.id, lang))
    return json_response(request, doc)


async def get_tileset(request: web.Request) -> web.Response:
    catalog = catalog_of(request)
    tour = catalog.tour(request.match_info["tour_id"])
    return json_response(request, catalog.cached(("tileset", tour.id),
                                                 lambda: catalog.tileset(tour.id)))


async def get_pack(request: web.Request) -> web.Response:
    catalog = catalog_of(request)
    tour = catalog.tour(request.match_info["tour_id"])
    lang = catalog.language(tour, _query(request, "lang"))
    tier = _query(request, "tier")
    if tier is not None and tier not in TIER_NAMES:
        raise InvalidRequest(f"tier {tier!r} is unknown; use one of {', '.join(TIER_NAMES)}",
                             code="tier_unknown", field="tier")
    doc = catalog.cached(("pack", tour.id, lang, tier),
                         lambda: catalog.pack(tour.id, lang, tier))
    return json_response(request, doc)


async def get_anchor(request: web.Request) -> web.Response:
    catalog = catalog_of(request)
    anchor_id = catalog.anchor(request.match_info["anchor_id"]).anchor.id
    return json_response(request, catalog.cached(("anchor", anchor_id),
                                                 lambda: catalog.anchor_document(anchor_id)))


async def get_geopose(request: web.Request) -> web.Response:
    catalog = catalog_of(request)
    entry = catalog.anchor(request.match_info["anchor_id"])
    doc = catalog.cached(("geopose", entry.anchor.id), entry.anchor.pose.to_json)
    return json_response(request, doc, content_type=GEOPOSE_MEDIA_TYPE)


async def get_scene(request: web.Request) -> web.Response:
    catalog = catalog_of(request)
    scene_id = catalog.scene(request.match_info["scene_id"]).scene.id
    return json_response(request, catalog.cached(("scene", scene_id),
                                                 lambda: catalog.scene_document(scene_id)))


async def get_scene_glb(request: web.Request) -> web.Response:
    """Redirect to the variant that fits the client (see model.variants for the rules)."""
    catalog = catalog_of(request)
    entry = catalog.scene(request.match_info["scene_id"])
    tier = _query(request, "tier")
    if tier is not None and tier not in TIER_NAMES:
        raise InvalidRequest(f"tier {tier!r} is unknown; use one of {', '.join(TIER_NAMES)}",
                             code="tier_unknown", field="tier")
    headers = {"Accept-CH": ACCEPT_CH, "Cache-Control": "private, max-age=60"}
    if tier is None:
        tier = choose_tier(request.headers, DEFAULT_TIER)
        headers["Vary"] = ACCEPT_CH  # the answer depended on the hints: caches key on them
    variant = entry.variant(tier)
    headers["Location"] = catalog.content_url(BlobRef.from_json(variant["blob"]))
    headers["X-Tourserver-Tier"] = tier
    return web.Response(status=302, headers=headers)


async def get_cell(request: web.Request) -> web.Response:
    catalog = catalog_of(request)
    try:
        cell, res = cells.parse_cell(request.match_info["cell"])
    except cells.CellError as exc:
        raise InvalidRequest(str(exc), code="cell_invalid", field="cell") from None
    return json_response(request, catalog.cell_rendered(cell, res), cache=CELL_CACHE)
