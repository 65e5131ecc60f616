"""The stop view (#/stop/<tour>/<stop>) in a real browser on the bundled Chongqing tour: its
real scene (meshopt, quantized meshes, WebP textures) drawn by WebGL on SwiftShader, the
variant picked for the device and the low-data mode, the narration with captions in two
languages, the honest AR fallback, and a phone-width layout."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from tourserver.model.variants import choose_tier

TOUR = "chongqing-night"

CANVAS_READY = ("() => Number(document.querySelector('canvas.scene-canvas')"
                "?.dataset.triangles) > 0")


@pytest.fixture(scope="module")
def demo_tour(demo_server) -> dict:
    """The whole tour document, every language."""
    return demo_server.json("GET", f"/v1/tours/{TOUR}")


@pytest.fixture(scope="module")
def stop(demo_tour) -> dict:
    return demo_tour["stops"][0]


@pytest.fixture(scope="module")
def variants(demo_server, stop) -> dict[str, dict]:
    scene = demo_server.json("GET", stop["scenes"][0]["url"])
    return {v["tier"]: v for v in scene["variants"]}


def open_stop(open_page, server, stop, **context_options):
    """(page, errors, requests): the stop view, with every request the page makes."""
    page, errors = open_page("about:blank", **context_options)
    requests: list = []
    page.on("request", lambda request: requests.append(request))
    page.goto(f"{server.base}/#/stop/{TOUR}/{stop['id']}")
    return page, errors, requests


def canvas_attr(page, name: str) -> str:
    return page.evaluate(f"() => document.querySelector('canvas.scene-canvas').dataset.{name}")


def hex_rgb(value: str) -> np.ndarray:
    return np.array([int(value[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)


def share_unlike(png: bytes, colour: np.ndarray, tolerance: int = 24) -> float:
    """The share of pixels further than `tolerance` (any channel) from `colour`."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    return float((np.abs(pixels - colour).max(axis=2) > tolerance).mean())


def vtt_cues(text: str) -> list[str]:
    """Each cue's text, lines joined by a newline (as the page shows them)."""
    cues = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = block.strip().split("\n")
        for i, line in enumerate(lines):
            if "-->" in line:
                cues.append("\n".join(lines[i + 1:]).strip())
                break
    return cues


def same_origin(url: str, base: str) -> bool:
    # Textures inside a GLB are decoded from blob: URLs of the page's own origin.
    return url.startswith((base + "/", f"blob:{base}/", "data:"))


def test_stop_renders_its_scene_from_the_device_tier(demo_server, open_page, stop, variants):
    page, errors, requests = open_stop(open_page, demo_server, stop, locale="en-US")
    page.wait_for_function(CANVAS_READY, timeout=60_000)
    assert page.inner_text("main h1") == stop["title"]["en"]
    assert page.get_attribute("a.back", "href") == f"#/tour/{TOUR}"

    # The tier follows the server's rules fed from what this browser reports.
    nav = page.evaluate("""() => ({ect: navigator.connection?.effectiveType || '',
        memory: navigator.deviceMemory, saveData: navigator.connection?.saveData === true})""")
    hints = {"ECT": nav["ect"]}
    if nav["memory"] is not None:
        hints["Device-Memory"] = str(nav["memory"])
    if nav["saveData"]:
        hints["Save-Data"] = "on"
    tier = canvas_attr(page, "tier")
    assert tier == choose_tier(hints), (tier, hints)
    glbs = [r.url for r in requests if r.url.endswith(".glb")]
    assert glbs == [demo_server.base + variants[tier]["url"]]
    # Everything in the file was drawn: the whole model is in view.
    assert int(canvas_attr(page, "triangles")) == variants[tier]["triangles"]

    # Real pixels: a good share of the canvas is not the night sky it is cleared to.
    canvas = page.locator("canvas.scene-canvas")
    clear = hex_rgb(canvas_attr(page, "clear"))
    blank = Image.new("RGB", (64, 64), tuple(int(c) for c in clear))
    buffer = io.BytesIO()
    blank.save(buffer, "PNG")
    assert share_unlike(buffer.getvalue(), clear) == 0  # what a blank canvas would score
    drawn = share_unlike(canvas.screenshot(), clear)
    assert drawn > 0.02, f"only {drawn:.2%} of the canvas differs from the clear colour"

    # The 360° view really turns: frames a second apart differ; without it, the view rests.
    still = canvas.screenshot()
    page.wait_for_timeout(700)
    assert canvas.screenshot() == still
    canvas.focus()  # the keyboard turns it too (OrbitControls: Shift + arrow keys)
    page.keyboard.press("Shift+ArrowLeft")
    page.wait_for_timeout(300)
    assert canvas.screenshot() != still
    page.click("button.view-360")
    assert page.get_attribute("button.view-360", "aria-pressed") == "true"
    page.wait_for_timeout(1000)
    assert canvas.screenshot() != still

    # No WebXR immersive-ar in headless Chromium: the honest note, with real accuracy figures.
    supported = page.evaluate("""async () => !!(navigator.xr
        && await navigator.xr.isSessionSupported('immersive-ar').catch(() => false))""")
    if not supported:
        page.click("button.view-ar")
        note = page.locator(".ar-note")
        note.wait_for(state="visible")
        assert "5–20 m" in note.inner_text() and "±10–20°" in note.inner_text()

    page.wait_for_load_state("networkidle")
    assert not errors.messages, errors.messages
    strays = [r.url for r in requests if not same_origin(r.url, demo_server.base)]
    assert not strays, strays


def test_low_data_mode_loads_the_low_variant(demo_server, open_page, stop, variants):
    assert variants["low"]["url"] not in (variants["medium"]["url"], variants["high"]["url"])
    low_url = demo_server.base + variants["low"]["url"]
    page, errors, requests = open_stop(open_page, demo_server, stop, locale="en-US")
    page.wait_for_function(CANVAS_READY, timeout=60_000)
    assert canvas_attr(page, "tier") != "low"  # a desktop browser on 4g: not low by itself
    assert low_url not in [r.url for r in requests]

    page.check("input.low-data")
    page.wait_for_function("""() => {
        const c = document.querySelector('canvas.scene-canvas');
        return c?.dataset.tier === 'low' && Number(c.dataset.triangles) > 0; }""",
                           timeout=60_000)
    assert low_url in [r.url for r in requests]
    assert int(canvas_attr(page, "triangles")) == variants["low"]["triangles"]
    assert page.locator("canvas.scene-canvas").count() == 1  # the old renderer is gone
    assert page.evaluate("() => localStorage.getItem('lowData')") == "1"

    # The setting stays: the next visit asks for the low variant straight away.
    requests.clear()
    page.reload()
    page.wait_for_function(CANVAS_READY, timeout=60_000)
    assert page.is_checked("input.low-data")
    assert [r.url for r in requests if r.url.endswith(".glb")] == [low_url]
    assert not errors.messages, errors.messages


def test_narration_plays_with_captions_and_switches_language(
        demo_server, open_page, stop, demo_tour):
    narration = stop["narration"]
    assert {"en", "zh-Hans"} <= set(narration) and set(demo_tour["languages"]) >= set(narration)
    cues = {lang: vtt_cues(demo_server.call("GET", narration[lang]["subtitles"]["url"])[2]
                           .decode()) for lang in ("en", "zh-Hans")}
    assert all(cues.values())

    page, errors, requests = open_stop(open_page, demo_server, stop, locale="en-US")
    page.wait_for_selector("button.narration-play")
    # The demo offers .m4a (AAC) and .mp3: the page must pick one this build can play.
    can_play = page.evaluate("""(types) => types.map(
        (t) => document.createElement('audio').canPlayType(t))""",
                             [a["mime"] for a in narration["en"]["audio"]])
    playable = [a["url"] for a, ok in zip(narration["en"]["audio"], can_play, strict=True) if ok]
    assert playable, can_play
    sources = page.evaluate("() => [...document.querySelectorAll('audio source')]"
                            ".map((s) => s.getAttribute('src'))")
    assert sources and sources[0] in playable and set(sources) <= set(playable)

    def captions_in(lang: str) -> str:
        page.wait_for_function("() => document.querySelector('.captions').textContent.trim()",
                               timeout=30_000)
        text = page.inner_text(".captions").strip()
        assert text in cues[lang], (text, cues[lang])
        return text

    page.click("button.narration-play")  # a real user gesture: no autoplay flag needed
    captions_in("en")
    assert page.evaluate("() => document.querySelector('audio').currentSrc") \
        == demo_server.base + sources[0]
    assert page.get_attribute("button.narration-play", "aria-pressed") == "true"
    assert page.get_attribute(".captions", "aria-live") == "polite"
    # Seeking (over HTTP Range) brings the captions of that moment.
    page.evaluate("() => { document.querySelector('audio').currentTime = 22; }")
    page.wait_for_function("(cue) => document.querySelector('.captions').textContent === cue",
                           arg=cues["en"][4], timeout=30_000)
    audio_requests = [r for r in requests if r.url.split("/")[-1] in
                      {a["url"].split("/")[-1] for a in narration["en"]["audio"]}]
    assert any((r.headers.get("range") or "").startswith("bytes=") for r in audio_requests)

    # Another language: new audio, new captions, the transcript in that language.
    page.select_option("select.narration-lang", "zh-Hans")
    zh_urls = {a["url"] for a in narration["zh-Hans"]["audio"]}
    page.wait_for_function("""(urls) => {
        const s = document.querySelector('audio source');
        return s && urls.includes(s.getAttribute('src')); }""", arg=sorted(zh_urls))
    assert page.evaluate("() => document.querySelector('audio').paused")
    assert page.inner_text(".captions").strip() == ""
    assert page.get_attribute(".captions", "lang") == "zh-Hans"
    page.click(".transcript summary")
    assert page.inner_text(".transcript-text") == narration["zh-Hans"]["transcript"]
    page.click("button.narration-play")
    captions_in("zh-Hans")
    assert page.evaluate("() => document.querySelector('audio').currentSrc") \
        .removeprefix(demo_server.base) in zh_urls
    page.click("button.narration-play")  # pause
    assert page.evaluate("() => document.querySelector('audio').paused")
    page.click("button.narration-play")
    page.wait_for_function("() => !document.querySelector('audio').paused")
    # Leaving the stop stops its narration and gives back the WebGL context.
    page.evaluate("() => { window.narrationAudio = document.querySelector('audio'); "
                  "location.hash = '#/'; }")
    page.wait_for_selector(".card a")
    assert page.evaluate("() => document.querySelectorAll('audio, canvas').length") == 0
    assert page.evaluate("() => window.narrationAudio.paused")
    assert not errors.messages, errors.messages
    strays = [r.url for r in requests if not same_origin(r.url, demo_server.base)]
    assert not strays, strays


def test_nothing_overflows_at_360px(demo_server, open_page, stop):
    page, errors, _ = open_stop(open_page, demo_server, stop, locale="en-US",
                                viewport={"width": 360, "height": 740})
    page.wait_for_function(CANVAS_READY, timeout=60_000)
    page.click("button.view-ar")  # the longest text, when AR is unavailable
    page.click(".transcript summary")
    overflow = """() => {
        const width = document.documentElement.clientWidth;
        const wide = [...document.querySelectorAll('body *')].filter((el) => {
            if (el.closest('.visually-hidden, .skip, [hidden]')) return false;
            const r = el.getBoundingClientRect();
            return r.width > 0 && (r.right > width + 0.5 || r.left < -0.5);
        }).map((el) => el.tagName + '.' + el.className);
        return {scroll: document.documentElement.scrollWidth, width, wide};
    }"""
    for _ in range(2):  # normal text, then the larger text setting
        got = page.evaluate(overflow)
        assert got["width"] == 360 and got["scroll"] <= 360 and not got["wide"], got
        page.click("#text-toggle")
        page.wait_for_timeout(300)  # the scene's canvas follows its container's new size
    assert page.evaluate("() => document.documentElement.dataset.text") == "normal"
    assert not errors.messages, errors.messages
