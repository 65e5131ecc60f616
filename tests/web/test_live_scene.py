"""A live event changes the 3D scene itself: the stop's scene is rendered on the event page,
and a host's lights cue recolours it at the cue's time, not before."""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image, ImageStat
from test_live_event import Host, host_socket


def mean_rgb(page) -> tuple[float, float, float]:
    shot = page.locator("#event-scene canvas").screenshot()
    return tuple(ImageStat.Stat(Image.open(io.BytesIO(shot)).convert("RGB")).mean)


def red_pixels(page) -> int:
    """Pixels where red clearly dominates: the lit windows once a red cue plays."""
    image = Image.open(io.BytesIO(page.locator("#event-scene canvas").screenshot()))
    rgb = np.asarray(image.convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return int(((r > g + 40) & (r > b + 40)).sum())


def test_a_lights_cue_recolours_the_rendered_scene_at_its_time(demo_server, open_page):
    tour = demo_server.json("GET", "/v1/tours/chongqing-night")
    stop = next(s for s in tour["stops"] if s["scenes"])
    event = demo_server.create_event(title="Scene lights", tour="chongqing-night",
                                     stop=stop["id"])
    page, errors = open_page(f"{demo_server.base}/?event={event['id']}")
    page.wait_for_function(
        "() => Number(document.querySelector('#event-scene canvas')?.dataset.triangles) > 0",
        timeout=30_000)
    assert page.get_attribute("#event-scene canvas", "data-scene") == stop["scenes"][0]["id"]
    page.wait_for_timeout(500)
    before = mean_rgb(page)
    red_before = red_pixels(page)
    with host_socket(demo_server, event) as ws:
        host = Host(ws)
        cue = host.cue(2.0, "lights", color="#ff0000", intensity=1.0, pattern="steady")
        time.sleep(0.5)
        early = mean_rgb(page)  # 1.5 s before its time: unchanged
        assert abs(early[0] - before[0]) < 2 and abs(early[2] - before[2]) < 2, (before, early)
        wait_ms = max(0.0, cue["at"] - host.now()) + 1500
        page.wait_for_timeout(wait_ms)
        red_after = red_pixels(page)
    # Red light: the lit windows turn red.
    assert red_after > red_before + 200, (red_before, red_after)
    assert not errors.messages, errors.messages
