"""Offline: load the tour, download it, lose the signal, reload: the stop still renders
and its narration plays, from the service worker's cache."""

from __future__ import annotations

TOUR = "chongqing-night"


def test_a_downloaded_tour_works_without_a_signal(demo_server, browser):
    tour = demo_server.json("GET", f"/v1/tours/{TOUR}?lang=en")
    stop = tour["stops"][0]
    context = browser.new_context(service_workers="allow")
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.goto(f"{demo_server.base}/#/tour/{TOUR}")
        page.wait_for_selector("#offline-download")
        size = page.inner_text("#tour-offline")
        assert "MB" in size  # the size is shown before anything is downloaded
        page.click("#offline-download")
        page.wait_for_function(
            "() => document.querySelector('#offline-status').textContent.includes('without')",
            timeout=60_000)
        assert page.eval_on_selector("#offline-progress", "p => p.value === p.max")
        errors_before = list(errors)

        context.set_offline(True)
        page.goto(f"{demo_server.base}/#/stop/{TOUR}/{stop['id']}")
        page.reload()  # from the cache: the app, the tour document, the scene, the audio
        page.wait_for_function(
            "() => Number(document.querySelector('canvas[data-triangles]')?.dataset.triangles) > 0",
            timeout=60_000)
        page.click("button.narration-play")
        page.wait_for_function(
            "() => document.querySelector('audio').currentTime > 0.3", timeout=30_000)
        page.wait_for_function(
            "() => document.querySelector('.captions').textContent.trim().length > 0",
            timeout=30_000)
        # Offline, a failed network fetch before the cache answers is logged by Chromium as a
        # resource error; anything else is a real error.
        offline_errors = [e for e in errors[len(errors_before):]
                          if "ERR_INTERNET_DISCONNECTED" not in e
                          and "Failed to load resource" not in e]
        assert not errors_before and not offline_errors, errors
    finally:
        context.close()
