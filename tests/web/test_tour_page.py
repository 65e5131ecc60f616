"""The tour page in a real browser: stops in order, the route drawn as SVG, distance and
time estimates, the lights-on schedule in the tour's time zone, and upcoming live events."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import pytest
from support import MINI_TOUR


def expected_km() -> float:
    (lon1, lat1), (lon2, lat2) = MINI_TOUR["route"]["coordinates"]
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


def test_tour_page_shows_stops_route_schedule_and_events(web_server, open_page):
    event = web_server.create_event(title="Riverside lights for the tour page")
    page, errors = open_page(web_server.base + "/#/tour/mini")
    page.wait_for_selector(f'#tour-events [data-event="{event["id"]}"]')

    assert page.inner_text("main h1") == "Mini tour"
    assert "Two stops for tests" in page.inner_text("main")
    stops = page.locator("ol.stops a")
    assert stops.all_inner_texts() == ["A", "B"]
    assert [stops.nth(i).get_attribute("href") for i in range(2)] == [
        "#/stop/mini/mini-a", "#/stop/mini/mini-b"]

    svg = page.locator("svg.route")
    assert svg.count() == 1
    assert svg.get_attribute("role") == "img"
    assert svg.get_attribute("aria-label") == "Route of the tour"
    assert page.locator("svg.route polyline.route-line").count() == 1
    markers = page.locator("svg.route .marker")
    assert markers.count() == 2
    assert markers.all_text_contents() == ["1", "2"]
    # The first stop is south-west of the second: lower on the map, and to the left.
    (x1, y1), (x2, y2) = [(float(markers.nth(i).locator("circle").get_attribute("cx")),
                           float(markers.nth(i).locator("circle").get_attribute("cy")))
                          for i in range(2)]
    assert x1 < x2 and y1 > y2

    km = float(page.get_attribute("#tour-distance", "data-km"))
    assert km > 0 and km == round(expected_km(), 1)
    assert page.inner_text("#tour-distance") == f"{km} km"
    minutes = int(page.get_attribute("#tour-duration", "data-min"))
    assert minutes == round((expected_km() / 4.5 * 60 + 2 * 10) / 5) * 5
    assert re.fullmatch(r"(Lit now|Lights on at .+) \(Asia/Shanghai\)",
                        page.inner_text("#tour-lights")), page.inner_text("#tour-lights")

    item = page.locator(f'#tour-events [data-event="{event["id"]}"]')
    assert "Riverside lights for the tour page" in item.inner_text()
    join = item.locator("a", has_text="Join")
    assert join.get_attribute("href") == f"#/event/{event['id']}"
    join.click()
    page.wait_for_function(
        "() => document.querySelector('#event-title')?.textContent"
        " === 'Riverside lights for the tour page'")
    assert not errors.messages, errors.messages


def test_tour_page_fits_a_narrow_phone(web_server, open_page):
    page, errors = open_page(web_server.base + "/#/tour/mini",
                             viewport={"width": 360, "height": 740})
    page.wait_for_selector("svg.route .marker")
    page.wait_for_selector("#tour-events p, #tour-events li")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 360
    box = page.locator("svg.route").bounding_box()
    assert box and box["width"] <= 360 and box["height"] > 50
    assert not errors.messages, errors.messages


# (local time in the tour, the same instant in UTC, what the page says). The mini tour is lit
# Fridays and Saturdays from 19:00 to 00:30 the next morning, Asia/Shanghai (UTC+8).
SCHEDULE = [
    ("fri-20:00", datetime(2025, 1, 3, 12, 0, tzinfo=UTC), "Lit now"),
    ("sat-00:15", datetime(2025, 1, 3, 16, 15, tzinfo=UTC), "Lit now"),  # Friday's window
    ("sun-00:20", datetime(2025, 1, 4, 16, 20, tzinfo=UTC), "Lit now"),  # Saturday's window
    ("sat-10:00", datetime(2025, 1, 4, 2, 0, tzinfo=UTC), "Lights on at 19:00"),  # today
    ("fri-18:59", datetime(2025, 1, 3, 10, 59, tzinfo=UTC), "Lights on at 19:00"),
    ("thu-10:00", datetime(2025, 1, 2, 2, 0, tzinfo=UTC), "Lights on at Friday 19:00"),
    ("sun-01:00", datetime(2025, 1, 4, 17, 0, tzinfo=UTC), "Lights on at Friday 19:00"),
]


@pytest.mark.parametrize(("now", "says"), [s[1:] for s in SCHEDULE], ids=[s[0] for s in SCHEDULE])
def test_lights_on_line_follows_the_tour_time_zone(web_server, browser, now, says):
    context = browser.new_context(locale="en-US", timezone_id="America/New_York")
    try:
        page = context.new_page()
        page.clock.set_fixed_time(now)
        page.goto(web_server.base + "/#/tour/mini")
        page.wait_for_selector("#tour-lights:not(:empty)")
        assert page.inner_text("#tour-lights") == f"{says} (Asia/Shanghai)"
    finally:
        context.close()
