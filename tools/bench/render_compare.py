"""Render two GLBs the same way and say how far apart they look: for texture decisions a
metric cannot settle (does posterizing a smooth roughness map draw contours?).

    python tools/bench/render_compare.py SOURCE.glb CANDIDATE.glb --out DIR [--size 1024]

Each view is rendered by three.js (the web app's copy, node_modules/three) in Debian's
headless Chromium (SwiftShader: the same pixels on every machine): image-based lighting
from three's RoomEnvironment, one directional light, ACES tone mapping, the camera framed
on the scene's bounds (a whole view and two close-ups at 3x). It writes a{k}.png and
b{k}.png per view and diff{k}.png (the largest channel difference x 16), and prints one
JSON object: per view, the largest, 99th-percentile and mean difference (8-bit levels)
and how many pixels differ by more than 2. Look at the close-ups: a difference of a
level or two is below what a screen shows; contour lines or lost streaks are not.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import shutil
import socketserver
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--ignore-gpu-blocklist"]
# zoom: the camera's distance divides by it; yaw: radians around the scene; look/lift:
# where the camera looks and stands, as shares of the scene's height from its centre.
VIEWS = (
    {"zoom": 1.0, "yaw": 0.5, "look": 0.0, "lift": 0.0},
    {"zoom": 3.0, "yaw": 0.5, "look": 0.25, "lift": 0.25},
    {"zoom": 3.0, "yaw": -0.8, "look": -0.2, "lift": -0.1},
)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8">
<script type="importmap">{"imports": {"three": "/three/build/three.module.js",
 "three/addons/": "/three/examples/jsm/"}}</script>
<style>body { margin: 0; background: #000 }</style></head>
<body><script type="module">
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { MeshoptDecoder } from "three/addons/libs/meshopt_decoder.module.js";
import { RoomEnvironment } from "three/addons/environments/RoomEnvironment.js";
const q = new URLSearchParams(location.search);
const size = +q.get("size");
const renderer = new THREE.WebGLRenderer({ antialias: false, preserveDrawingBuffer: true });
renderer.setPixelRatio(1);
renderer.setSize(size, size);
renderer.toneMapping = THREE.ACESFilmicToneMapping;
document.body.appendChild(renderer.domElement);
const scene = new THREE.Scene();
scene.background = new THREE.Color(0x202020);
scene.environment = new THREE.PMREMGenerator(renderer)
  .fromScene(new RoomEnvironment(), 0.04).texture;
const sun = new THREE.DirectionalLight(0xffffff, 2.5);
sun.position.set(2, 3, 4);
scene.add(sun);
new GLTFLoader().setMeshoptDecoder(MeshoptDecoder).load(q.get("glb"), (gltf) => {
  scene.add(gltf.scene);
  const box = new THREE.Box3().setFromObject(gltf.scene);
  const c = box.getCenter(new THREE.Vector3()), extent = box.getSize(new THREE.Vector3());
  const camera = new THREE.PerspectiveCamera(35, 1, extent.length() / 1000, extent.length() * 10);
  const d = extent.length() * 1.2 / +q.get("zoom"), yaw = +q.get("yaw");
  camera.position.set(c.x + d * Math.sin(yaw), c.y + +q.get("lift") * extent.y,
                      c.z + d * Math.cos(yaw));
  camera.lookAt(c.x, c.y + +q.get("look") * extent.y, c.z);
  renderer.render(scene, camera);
  window.rendered = true;
}, undefined, (e) => { window.failed = String(e); });
</script></body></html>
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def compare(source: Path, candidate: Path, out: Path, size: int = 1024,
            views: tuple[dict, ...] = VIEWS, timeout_s: float = 180.0) -> list[dict]:
    """Render `source` and `candidate` from each of `views` into `out`; the differences
    per view (see the module docstring)."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("error: chromium is not installed (Debian package chromium)")
    three = REPO / "node_modules" / "three"
    if not three.is_dir():
        raise SystemExit("error: node_modules/three is missing: run npm ci")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp)
        (site / "three").symlink_to(three)
        (site / "view.html").write_text(PAGE)
        shutil.copyfile(source, site / "a.glb")
        shutil.copyfile(candidate, site / "b.glb")
        handler = functools.partial(_Quiet, directory=str(site))
        with socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler) as server:
            threading.Thread(target=server.serve_forever, daemon=True).start()
            base = f"http://127.0.0.1:{server.server_address[1]}/view.html?size={size}"
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                             args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": size, "height": size})
                figures = []
                for k, view in enumerate(views):
                    for name in ("a", "b"):
                        query = "".join(f"&{key}={value}" for key, value in view.items())
                        page.goto(f"{base}&glb=/{name}.glb{query}")
                        page.wait_for_function("window.rendered || window.failed",
                                               timeout=timeout_s * 1000)
                        failed = page.evaluate("window.failed || null")
                        if failed:
                            raise SystemExit(f"error: {name}.glb did not load: {failed}")
                        page.screenshot(path=str(out / f"{name}{k}.png"))
                    figures.append(_difference(out, k))
                browser.close()
            server.shutdown()
    return figures


def _difference(out: Path, k: int) -> dict:
    a, b = (np.asarray(Image.open(out / f"{name}{k}.png").convert("RGB"), np.int16)
            for name in ("a", "b"))
    diff = np.abs(a - b).max(axis=-1)
    Image.fromarray(np.clip(diff * 16, 0, 255).astype(np.uint8)).save(out / f"diff{k}.png")
    return {"view": k, "max": int(diff.max()), "p99": float(np.percentile(diff, 99)),
            "mean": round(float(diff.mean()), 3), "pixels_over_2": int((diff > 2).sum())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path)
    p.add_argument("candidate", type=Path)
    p.add_argument("--out", type=Path, required=True, help="where the renders go")
    p.add_argument("--size", type=int, default=1024, help="render width and height, px")
    args = p.parse_args(argv)
    for path in (args.source, args.candidate):
        if not path.is_file():
            print(f"error: {path}: no such file", file=sys.stderr)
            return 1
    print(json.dumps({"views": compare(args.source, args.candidate, args.out, args.size)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
