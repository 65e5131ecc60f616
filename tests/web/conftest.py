"""Browser tests: Debian's chromium driven by Playwright (the Python package, launched with
`executable_path`: no browser download), against a real `tourserver serve` process."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from live_support import LiveServer, private_data
from support import REPO, require

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu-sandbox", "--no-first-run", "--disable-quic",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # WebGL on the CPU (SwiftShader): the scene really renders with no GPU.
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
    # A fake camera (a test pattern) for the location-and-compass AR view.
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser() -> Iterator:
    path = chromium_path()
    require(path is not None, "chromium (Debian package)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the playwright Python package")
    require((REPO / "node_modules" / "three").is_dir(), "npm ci (three.js for the web app)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def web_server(mini_built, tmp_path_factory) -> Iterator[LiveServer]:
    """A real server on the mini tour (two stops, one scene, narration in en and zh-Hans)."""
    root, built = mini_built
    data = private_data(built, tmp_path_factory.mktemp("web"))
    server = LiveServer(data, root, "--tickets-per-minute", "100000")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def demo_server(demo_data, tmp_path_factory) -> Iterator[LiveServer]:
    """A real server on the bundled Chongqing tour: real scenes (lit windows, WebP textures,
    meshopt), narration audio and route. Content root: the repository."""
    server = LiveServer(private_data(demo_data, tmp_path_factory.mktemp("demo-web")), REPO)
    yield server
    server.stop()


class PageErrors:
    """Console errors and uncaught exceptions of a page: a test fails on any."""

    def __init__(self, page):
        self.messages: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.messages.append(m.text))
        page.on("pageerror", lambda e: self.messages.append(f"uncaught: {e}"))


@pytest.fixture()
def open_page(browser):
    """open_page(url) -> (page, errors); each page in a fresh context (its own storage)."""
    contexts = []

    def open_(url: str, **context_options):
        context = browser.new_context(**context_options)
        contexts.append(context)
        page = context.new_page()
        errors = PageErrors(page)
        page.goto(url)
        return page, errors

    yield open_
    for context in contexts:
        context.close()
