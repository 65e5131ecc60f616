"""Stops near me without telling the server where I am: with a granted geolocation the
page asks only for the coarse H3 cell and geofences on the device."""

from __future__ import annotations

import h3

STOP_A = (29.5572, 106.5770)  # stop mini-a of tests/support.MINI_TOUR (radius 50 m, dwell 3 s)


def test_discovery_sends_a_cell_never_the_position(web_server, browser):
    # 20 m from stop A: inside its 50 m radius.
    here = (STOP_A[0] + 0.00018, STOP_A[1])
    context = browser.new_context(geolocation={"latitude": here[0], "longitude": here[1],
                                               "accuracy": 8},
                                  permissions=["geolocation"])
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        sent: list[str] = []
        page.on("request", lambda r: sent.append(r.url + " " + (r.post_data or "")))
        page.goto(web_server.base + "/#/near")
        page.click("#near-start")
        page.wait_for_selector("#near-list .card")  # the cell's stops, listed by distance
        assert "20 m" in page.inner_text("#near-list")
        page.wait_for_selector("#near-open", timeout=10_000)  # after the 3 s dwell
        assert "/#/stop/mini/mini-a" in page.eval_on_selector("#near-open", "a => a.href")
        cell = h3.latlng_to_cell(*here, 8)
        assert any(f"/v1/cells/{cell}" in s for s in sent)
        digits = [f"{here[0]:.4f}"[:7], f"{here[1]:.4f}"[:7], "29.557", "106.577"]
        leaks = [s for s in sent for d in digits if d in s]
        assert not leaks, leaks  # no request URL or body carries the coordinates
        assert not errors, errors
    finally:
        context.close()


def test_without_permission_the_tourist_is_told_what_to_do(web_server, browser):
    context = browser.new_context()  # geolocation not granted
    try:
        page = context.new_page()
        page.goto(web_server.base + "/#/near")
        page.click("#near-start")
        page.wait_for_function(
            "() => document.querySelector('#near-status').textContent.includes('QR')")
        assert page.get_attribute("a[href='#/']", "href") == "#/"
    finally:
        context.close()


def test_printable_stop_qr_codes_open_each_stop(web_server, open_page):
    """Without location, a tourist scans the code put up at a stop: the tour page links a
    printable sheet with one QR code per stop, each for that stop's page."""
    page, errors = open_page(web_server.base + "/#/tour/mini")
    page.click("#tour-codes")
    page.wait_for_selector(".codes img")
    urls = page.eval_on_selector_all(".codes img", "imgs => imgs.map(i => i.dataset.url)")
    assert urls == [f"{web_server.base}/#/stop/mini/mini-a",
                    f"{web_server.base}/#/stop/mini/mini-b"]
    sizes = page.eval_on_selector_all(".codes img", "imgs => imgs.map(i => i.naturalWidth)")
    assert all(s > 100 for s in sizes)  # a real code, big enough to print and scan
    page.goto(urls[1])
    page.wait_for_function("() => document.querySelector('main h1')?.textContent === 'B'")
    assert not errors.messages, errors.messages
