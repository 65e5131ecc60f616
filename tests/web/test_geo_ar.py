"""AR without WebXR: the stop's scene placed at its GeoPose from the phone's location and
compass, over the camera image, with the accuracy said plainly. Facing the landmark shows
it; facing away does not."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
from PIL import Image

TOUR = "chongqing-night"


def drawn_pixels(page) -> int:
    """Pixels the scene drew on its transparent canvas (alpha > 0)."""
    data = page.evaluate("() => document.querySelector('.scene-box canvas').toDataURL()")
    image = Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[1]))).convert("RGBA")
    return int((np.asarray(image)[..., 3] > 0).sum())


def face(page, alpha: float) -> None:
    """An absolute device orientation: upright (beta 90), compass alpha (0 = north)."""
    page.evaluate("""(alpha) => window.dispatchEvent(Object.assign(
        new Event('deviceorientationabsolute'),
        {alpha, beta: 90, gamma: 0, absolute: true}))""", alpha)
    page.wait_for_timeout(400)


def test_scene_is_placed_by_location_and_compass(demo_server, browser):
    tour = demo_server.json("GET", f"/v1/tours/{TOUR}?lang=en")
    stop = next(s for s in tour["stops"] if s["scenes"])
    pose = (stop["scenes"][0].get("anchor") or stop["anchor"])["geopose"]["position"]
    # 80 m due south of the anchor.
    lat = pose["lat"] - 80 / 111_195.0
    context = browser.new_context(
        geolocation={"latitude": lat, "longitude": pose["lon"], "accuracy": 6},
        permissions=["geolocation", "camera"], viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.goto(f"{demo_server.base}/#/stop/{TOUR}/{stop['id']}")
        page.wait_for_function(
            "() => Number(document.querySelector('canvas[data-triangles]')?.dataset.triangles) > 0",
            timeout=30_000)
        page.click("button.view-ar")
        page.wait_for_function(
            "() => document.querySelector('.scene-box canvas').dataset.geoNorth !== undefined")
        canvas = page.locator(".scene-box canvas")
        assert math.isclose(float(canvas.get_attribute("data-geo-north")), -80, abs_tol=1)
        assert abs(float(canvas.get_attribute("data-geo-east"))) < 1
        note = page.inner_text(".ar-note")
        assert "±6 m" in note and "5–20 m" in note  # the accuracy, said plainly
        assert page.evaluate("() => !!document.querySelector('.geoar-video')?.srcObject")
        face(page, 0)  # north, towards the landmark
        towards = drawn_pixels(page)
        face(page, 180)  # south, away from it
        away = drawn_pixels(page)
        assert towards > 2000 and away < towards / 10, (towards, away)
        assert page.get_attribute(".scene-box canvas", "data-geo-heading") == "180"
        page.click("button.view-ar")  # leave: back to the 3D view
        page.wait_for_function(
            "() => document.querySelector('.scene-box canvas').dataset.geoNorth === undefined")
        assert not errors, errors
    finally:
        context.close()
