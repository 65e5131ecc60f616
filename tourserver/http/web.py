"""The web app and host console: their pages, their own files (/app/), and the JavaScript
libraries they use (/vendor/), served from the npm packages installed beside the package
(`npm ci`). Nothing is fetched from the internet at run time.

Files are read once, off the event loop, and kept in memory: the app is a few hundred KB.
Library URLs carry the installed version (/vendor/three@0.187.0/...), so they are cached
for a year; the app's own files revalidate (ETag) so an upgrade shows at once.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import mimetypes
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aiohttp import web

from tourserver.errors import NotFound
from tourserver.http.responses import etag_matches
from tourserver.model.variants import CLIENT_HINTS

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# The npm packages the pages may load, and the files of each that are served.
VENDOR_PACKAGES = {
    "three": ("build/", "examples/jsm/"),
    "h3-js": ("dist/browser/",),
    "qrcode-generator": ("dist/",),
}
SERVED_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
                ".html": "text/html", ".json": "application/json", ".svg": "image/svg+xml",
                ".wasm": "application/wasm", ".webmanifest": "application/manifest+json",
                ".png": "image/png"}
MAX_FILE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def _static(body: bytes, name: str) -> StaticFile:
    ext = Path(name).suffix
    content_type = SERVED_TYPES.get(ext) or mimetypes.guess_type(name)[0] or "text/plain"
    return StaticFile(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


class WebFiles:
    """The pages, the app's files and the vendor libraries, from disk once."""

    def __init__(self, node_modules: Path):
        self.node_modules = node_modules
        self.versions: dict[str, str] = {}
        for package in VENDOR_PACKAGES:
            manifest = node_modules / package / "package.json"
            try:
                self.versions[package] = json.loads(manifest.read_text())["version"]
            except (OSError, ValueError, KeyError):
                pass  # not installed: the page says so instead of failing to load
        root = resources.files("tourserver.web")
        self.app: dict[str, StaticFile] = {}
        for entry in root.joinpath("app").iterdir():
            if entry.is_file() and Path(entry.name).suffix in SERVED_TYPES:
                self.app[entry.name] = _static(entry.read_bytes(), entry.name)
        # The list of the app's files, so the offline download caches every one of them.
        names = json.dumps(sorted(self.app)).encode()
        self.app["files.json"] = _static(names, "files.json")
        self.service_worker = _static(root.joinpath("sw.js").read_bytes(), "sw.js")
        self.pages = {name: self._page(root.joinpath(f"{name}.html").read_text())
                      for name in ("index", "host")}
        self._vendor: dict[str, StaticFile] = {}
        self._lock = asyncio.Lock()

    def import_map(self) -> dict:
        v = self.versions
        imports = {}
        if "three" in v:
            imports["three"] = f"/vendor/three@{v['three']}/build/three.module.js"
            imports["three/addons/"] = f"/vendor/three@{v['three']}/examples/jsm/"
        if "h3-js" in v:
            imports["h3-js"] = f"/vendor/h3-js@{v['h3-js']}/dist/browser/h3-js.es.js"
        if "qrcode-generator" in v:
            imports["qrcode-generator"] = (f"/vendor/qrcode-generator@{v['qrcode-generator']}"
                                           "/dist/qrcode.mjs")
        return {"imports": imports}

    def _page(self, template: str) -> tuple[bytes, str]:
        """The page with its import map inline, and the CSP that allows exactly that
        script (import maps must be inline; a hash keeps 'unsafe-inline' out)."""
        script = json.dumps(self.import_map(), indent=1)
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        missing = sorted(set(VENDOR_PACKAGES) - set(self.versions))
        page = template.replace("<!--importmap-->",
                                f'<script type="importmap">{script}</script>')
        page = page.replace("<!--missing-->", (
            '<p class="banner" role="alert">Some libraries are not installed ('
            + ", ".join(missing) + "): run <code>npm ci</code> beside the server.</p>")
            if missing else "")
        csp = ("default-src 'self'; "
               f"script-src 'self' 'sha256-{digest}' 'wasm-unsafe-eval'; "
               "style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
               "connect-src 'self' ws: wss: blob: data:; worker-src 'self' blob:; "
               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
        return page.encode(), csp

    async def vendor(self, package: str, version: str, path: str) -> StaticFile:
        key = f"{package}@{version}/{path}"
        hit = self._vendor.get(key)
        if hit is not None:
            return hit
        if self.versions.get(package) != version:
            raise NotFound(f"{package}@{version} is not installed here", field="path")
        if (".." in path.split("/") or path.startswith("/") or "\\" in path
                or not path.startswith(VENDOR_PACKAGES[package])
                or Path(path).suffix not in SERVED_TYPES):
            raise NotFound(f"no file {path!r} in {package}", field="path")
        async with self._lock:
            try:
                # resolve() reads symlinks: in the thread, with the read, off the loop
                body = await asyncio.to_thread(_read_capped, self.node_modules / package, path)
            except OSError:
                raise NotFound(f"no file {path!r} in {package}", field="path") from None
            hit = self._vendor[key] = _static(body, Path(path).name)
        return hit


def _read_capped(folder: Path, relative: str) -> bytes:
    """A file of `folder` (never outside it, symlinks included), at most MAX_FILE_BYTES."""
    base = folder.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base) or path.stat().st_size > MAX_FILE_BYTES:
        raise OSError("outside its package, or too large")
    return path.read_bytes()


def _send(request: web.Request, f: StaticFile, cache: str) -> web.Response:
    headers = {"ETag": f.etag, "Cache-Control": cache}
    if etag_matches(request, f.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=f.body, headers={**headers, "Content-Type": f.content_type})


WEB = web.AppKey("web", WebFiles)


def _page(name: str):
    async def handler(request: web.Request) -> web.Response:
        body, csp = request.app[WEB].pages[name]
        return web.Response(body=body, content_type="text/html", charset="utf-8", headers={
            "Cache-Control": REVALIDATE, "Content-Security-Policy": csp,
            # Browsers send ECT and Device-Memory only to an origin whose top-level page
            # asked for them: the app (and the API's tier choice) read them.
            "Accept-CH": ", ".join(CLIENT_HINTS),
            "Permissions-Policy": "geolocation=(self), xr-spatial-tracking=(self), "
                                  "camera=(self), gyroscope=(self), accelerometer=(self), "
                                  "magnetometer=(self)"})
    return handler


index = _page("index")
host = _page("host")


async def app_file(request: web.Request) -> web.Response:
    f = request.app[WEB].app.get(request.match_info["name"])
    if f is None:
        raise NotFound(f"no app file {request.match_info['name'][:100]!r}", field="name")
    return _send(request, f, REVALIDATE)


async def service_worker(request: web.Request) -> web.Response:
    response = _send(request, request.app[WEB].service_worker, REVALIDATE)
    response.headers["Service-Worker-Allowed"] = "/"
    return response


async def vendor_file(request: web.Request) -> web.Response:
    spec, path = request.match_info["spec"], request.match_info["path"]
    package, _, version = spec.rpartition("@")
    if package not in VENDOR_PACKAGES:
        raise NotFound(f"no library {spec[:60]!r}", field="spec")
    f = await request.app[WEB].vendor(package, version, path)
    return _send(request, f, IMMUTABLE)
