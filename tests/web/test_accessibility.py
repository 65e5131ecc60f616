"""An accessibility scan (axe-core, from npm) of every main screen, in the dark and the
light theme: no serious or critical violations. With TOURSERVER_SCREENSHOTS=1 the dark
screens are also saved to docs/screenshots/ (shown in the README); otherwise to a temp dir,
so a test run leaves the checkout as it was."""

from __future__ import annotations

import json
import os

import pytest
from support import REPO

AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
SCREENS = [
    ("tours", "/#/", "main .card"),
    ("tour", "/#/tour/chongqing-night", "main svg"),
    ("stop", "/#/stop/chongqing-night/jiefangbei", "main canvas[data-triangles]"),
    ("near", "/#/near", "#near-start"),
    ("event", "/#/event/{event}", "main h1"),
    ("host", "/host", "main"),
]


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_no_serious_accessibility_violations(demo_server, browser, theme, tmp_path):
    web_server = demo_server
    event = web_server.create_event(title="Hongya Cave lights", tour="chongqing-night",
                                    stop="hongya-cave")
    # axe is injected as a script: this context alone lifts the page's CSP to allow it.
    context = browser.new_context(bypass_csp=True, viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        page.goto(web_server.base + "/")
        page.evaluate(f"() => localStorage.setItem('theme', '{theme}')")
        found = {}
        for name, path, ready in SCREENS:
            page.goto(web_server.base + path.format(event=event["id"]))
            page.reload()  # a hash change alone would not re-read the saved theme
            page.wait_for_selector(ready)
            page.wait_for_timeout(300)
            assert page.evaluate("() => document.documentElement.dataset.theme") == theme
            page.add_script_tag(path=str(AXE))
            result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
            serious = [{"id": v["id"], "impact": v["impact"], "help": v["help"],
                        "nodes": [n["target"] for n in v["nodes"]][:5]}
                       for v in result["violations"] if v["impact"] in ("serious", "critical")]
            if serious:
                found[name] = serious
            if theme == "dark":
                keep = os.environ.get("TOURSERVER_SCREENSHOTS") == "1"
                shots = REPO / "docs" / "screenshots" if keep else tmp_path
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shots / f"{name}.png"))
        assert not found, json.dumps(found, indent=1, ensure_ascii=False)
    finally:
        context.close()
