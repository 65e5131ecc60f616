"""Every page of the web app loads in a real browser with no console errors, from the
server's own files and libraries (nothing from the internet)."""

from __future__ import annotations


def test_tour_list_and_host_console_load_cleanly(web_server, open_page):
    requested: list[str] = []
    page, errors = open_page(web_server.base + "/")
    page.on("request", lambda r: requested.append(r.url))
    page.wait_for_selector(".card a")
    assert "Mini tour" in page.inner_text("main")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"  # night first
    page.click("#theme-toggle")
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    page.select_option("#lang-select", "zh-Hans")
    page.wait_for_function("() => document.querySelector('main h1')?.textContent === '游览路线'")
    assert "小游" in page.inner_text("main")  # the tour's own title in that language
    host, host_errors = open_page(web_server.base + "/host")
    host.wait_for_load_state("networkidle")
    assert not errors.messages and not host_errors.messages, errors.messages + host_errors.messages
    assert all(url.startswith(web_server.base) for url in requested)


def test_libraries_are_served_versioned_and_immutable(web_server):
    status, headers, body = web_server.call("GET", "/")
    assert status == 200 and b'type="importmap"' in body
    import json
    import re

    imports = json.loads(re.search(rb'<script type="importmap">(.*?)</script>', body,
                                   re.S).group(1))["imports"]
    for name in ("three", "h3-js", "qrcode-generator"):
        status, headers, js = web_server.call("GET", imports[name])
        assert status == 200, name
        assert headers["Content-Type"].startswith("text/javascript")
        assert "immutable" in headers["Cache-Control"] and len(js) > 1000
    for bad in ("/vendor/three@0.0.1/build/three.module.js",
                "/vendor/three@0.187.0/../../package.json",
                "/vendor/three@0.187.0/src/Three.js", "/vendor/left-pad@1.0.0/index.js"):
        assert web_server.call("GET", bad)[0] == 404, bad
    status, headers, _ = web_server.call("GET", "/app/main.js")
    assert status == 200 and headers["Cache-Control"] == "no-cache" and headers["ETag"]
    assert "script-src 'self' 'sha256-" in web_server.call("GET", "/")[1][
        "Content-Security-Policy"]
