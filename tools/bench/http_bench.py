"""HTTP serving benchmark: tourserver against nginx serving the same bytes, on loopback.

    python tools/bench/http_bench.py [--json] [--duration S] [--connections N] [--anchors N]

Three targets, each measured with wrk against tourserver and against nginx in the same run
(shared, noisy machines: read the ratios, not the absolute figures):

  manifest  GET /v1/tours/bench          nginx: the same JSON bytes as a static file
  cell      GET /v1/cells/<busy res-8>   tourserver with ~100k anchors loaded (synthetic
                                         catalog); nginx: the same response bytes, static
  glb       GET /c/<sha256>.glb          the ~1 MB "high" variant; nginx: the same file
                                         from the blob store with sendfile

tourserver runs with 1 worker, then `--workers 2`; nginx with worker_processes 1, then 2.
The 100k-anchor server is a single process (cell target, 1-worker phase only).
Both servers log every request to a file (tourserver: its production JSON logging on
stderr, redirected; nginx: the combined access log).

Installs nginx and wrk with apt-get when they are missing; downloads nothing else. Binds
127.0.0.1 only. Every process started here is killed (process group) on the way out.
With --json the last line of stdout is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import synthetic  # noqa: E402  (tools/bench is not a package)
from common import Procs, cpu_model, free_port, tail  # noqa: E402

HOST = "127.0.0.1"
TOUR_ID = synthetic.MINI_TOUR["id"]
SCENE_ID = "bench-a-scene"
WARMUP_S = 2
GLB_TARGET_RATIO = 0.5
CELL_P99_TARGET_MS = 5.0


def say(msg: str) -> None:
    print(f"[http_bench] {msg}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


# ---- tools ---------------------------------------------------------------------------------
def _find(cmd: str) -> str | None:
    found = shutil.which(cmd)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/local/sbin", "/sbin"):  # nginx lives in sbin
        if os.access(f"{d}/{cmd}", os.X_OK):
            return f"{d}/{cmd}"
    return None


def ensure_tools() -> tuple[str, str]:
    """Paths of nginx and wrk, installing both with apt-get if either is missing."""
    nginx, wrk = _find("nginx"), _find("wrk")
    if nginx and wrk:
        return nginx, wrk
    apt = shutil.which("apt-get")
    if apt is None:
        raise BenchError("nginx and wrk are needed and apt-get is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "--no-install-recommends", "nginx", "wrk"]
    say("installing nginx and wrk with apt-get")
    if subprocess.run(install, env=env, timeout=900).returncode != 0:
        subprocess.run([apt, "update"], env=env, timeout=900, check=True)
        subprocess.run(install, env=env, timeout=900, check=True)
    nginx, wrk = _find("nginx"), _find("wrk")
    if not (nginx and wrk):
        raise BenchError("apt-get ran but nginx or wrk is still missing")
    return nginx, wrk


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def machine_info(nginx: str, wrk: str) -> dict:
    import aiohttp
    import aiohttp.http_parser as hp

    cpu = cpu_model()
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem_gb = None
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "memory_gb": mem_gb,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "aiohttp_c_parser": hp.HttpRequestParser.__module__.endswith("_http_parser"),
        "nginx": _version([nginx, "-v"]),
        "wrk": _version([wrk, "-v"]),
        "loadavg_start": list(os.getloadavg()),
    }


# ---- processes -----------------------------------------------------------------------------
def fetch(url: str, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers={"User-Agent": "http_bench"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (loopback only)
        return resp.status, dict(resp.headers), resp.read()


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / 0.1) + 1):
        if proc.poll() is not None:
            raise BenchError(f"{proc.args[0]} exited with {proc.returncode}:\n{tail(log)}")
        try:
            if fetch(url, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    raise BenchError(f"{url} did not answer within {timeout_s:g} s:\n{tail(log)}")


def wait_log_count(log: Path, needle: str, count: int, proc: subprocess.Popen,
                   timeout_s: float) -> None:
    """Until `needle` appears `count` times in the log (every worker said it is serving)."""
    for _ in range(int(timeout_s / 0.1) + 1):
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode}:\n{tail(log)}")
        try:
            if log.read_text(errors="replace").count(needle) >= count:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"{count} worker(s) did not report ready within {timeout_s:g} s")


def read_json_line(proc: subprocess.Popen, log: Path, timeout_s: float) -> dict:
    """The first JSON line a child prints on stdout, waiting at most timeout_s."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    buf = b""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"synthetic server exited with {proc.returncode}:\n{tail(log)}")
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if not ready:
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            continue
        buf += chunk
        if b"\n" in buf:
            return json.loads(buf.split(b"\n", 1)[0])
    raise BenchError(f"synthetic server not ready within {timeout_s:g} s:\n{tail(log)}")


# ---- nginx ---------------------------------------------------------------------------------
NGINX_CONF = """\
daemon off;
{user}
worker_processes {workers};
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    types {{ model/gltf-binary glb; application/json json; }}
    default_type application/octet-stream;
    access_log {tmp}/access.log;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 15s;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen {host}:{port};
        server_name localhost;
        location /v1/ {{
            root {static};
            default_type application/json;
            charset utf-8;
            charset_types application/json;
            add_header Cache-Control "public, max-age=60";
        }}
        location ~ "^/c/(([0-9a-f]{{2}})[0-9a-f]{{62}}\\.glb)$" {{
            alias {blobs}/$2/$1;
            add_header Cache-Control "public, max-age=31536000, immutable";
        }}
    }}
}}
"""


def start_nginx(procs: Procs, nginx: str, tmp: Path, workers: int, static: Path,
                blobs: Path) -> tuple[subprocess.Popen, int, Path]:
    prefix = tmp / f"nginx-w{workers}"
    prefix.mkdir()
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(NGINX_CONF.format(
        user="user root;" if os.geteuid() == 0 else "", workers=workers, tmp=prefix,
        host=HOST, port=port, static=static, blobs=blobs))
    log = prefix / "stderr.log"
    base = [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    check = subprocess.run(base + ["-t"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise BenchError(f"nginx config test failed:\n{check.stderr}")
    proc = procs.start(base, log)
    wait_http(f"http://{HOST}:{port}/v1/tours/{TOUR_ID}", proc, prefix / "error.log", 20)
    return proc, port, prefix


# ---- wrk -----------------------------------------------------------------------------------
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise BenchError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read", out)
    if not rps or not total:
        raise BenchError(f"cannot parse wrk output:\n{out}")
    pct = {p: _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)),
        "read": total.group(3),
        "p50_ms": pct.get("50"), "p75_ms": pct.get("75"),
        "p90_ms": pct.get("90"), "p99_ms": pct.get("99"),
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def run_wrk(wrk: str, url: str, connections: int, duration: int) -> dict:
    threads = max(1, min(2, connections))
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if out.returncode != 0:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
    return parse_wrk(out.stdout)


@dataclass
class Result:
    target: str
    workers: int
    server: str
    connections: int
    url_path: str
    body_bytes: int
    rps: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    requests: int
    socket_errors: int
    non_2xx: int


def measure(wrk: str, target: str, workers: int, server: str, base: str, path: str,
            body_bytes: int, connections: int, duration: int) -> Result:
    url = base + path
    run_wrk(wrk, url, connections, WARMUP_S)  # warm-up, discarded
    r = run_wrk(wrk, url, connections, duration)
    res = Result(target, workers, server, connections, path, body_bytes, r["rps"], r["p50_ms"],
                 r["p90_ms"], r["p99_ms"], r["requests"], r["socket_errors"], r["non_2xx"])
    say(f"{target:<9} w{workers} {server:<10} c={connections:<3} {res.rps:10.1f} req/s  "
        f"p50 {res.p50_ms:.3f} ms  p99 {res.p99_ms:.3f} ms"
        + (f"  ({res.non_2xx} non-2xx!)" if res.non_2xx else ""))
    if res.non_2xx:
        raise BenchError(f"{server} answered {res.non_2xx} non-2xx responses for {url}")
    return res


def same_body(a_url: str, b_url: str, expect_type: str) -> int:
    """Both servers give 200 and the same bytes with the expected type; returns the size."""
    sa, ha, ba = fetch(a_url)
    sb, hb, bb = fetch(b_url)
    if sa != 200 or sb != 200:
        raise BenchError(f"status {sa} / {sb} for {a_url} / {b_url}")
    if hashlib.sha256(ba).digest() != hashlib.sha256(bb).digest():
        raise BenchError(f"{a_url} and {b_url} differ ({len(ba)} / {len(bb)} bytes)")
    for h in (ha, hb):
        if not h.get("Content-Type", "").startswith(expect_type):
            raise BenchError(f"unexpected Content-Type {h.get('Content-Type')!r}")
    return len(ba)


# ---- the run -------------------------------------------------------------------------------
def high_variant(data: Path) -> tuple[str, int, Path]:
    """(name, bytes, path) of the "high" tier variant of the benchmark scene."""
    build_id = (data / "current").read_text().strip()
    catalog = json.loads((data / "builds" / f"{build_id}.json").read_text("utf-8"))
    for v in catalog["scenes"][SCENE_ID]["variants"]:
        if v["tier"] == "high":
            blob = v["blob"]
            name = f"{blob['sha256']}.{blob['ext']}"
            path = data / "blobs" / blob["sha256"][:2] / name
            if not path.is_file() or path.stat().st_size != blob["bytes"]:
                raise BenchError(f"blob {path} is missing or has the wrong size")
            return name, int(blob["bytes"]), path
    raise BenchError("the build has no high variant for the benchmark scene")


def start_tourserver(procs: Procs, tmp: Path, root: Path, data: Path,
                     workers: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    log = tmp / f"tourserver-w{workers}.log"
    cmd = [sys.executable, "-m", "tourserver", "serve", "--root", str(root), "--data", str(data),
           "--host", HOST, "--port", str(port), "--workers", str(workers), "--no-build"]
    proc = procs.start(cmd, log)
    wait_log_count(log, '"msg": "serving"', workers, proc, 60)
    wait_http(f"http://{HOST}:{port}/v1/health", proc, log, 30)
    return proc, port


def run(args: argparse.Namespace) -> dict:
    nginx, wrk = ensure_tools()
    info = machine_info(nginx, wrk)
    procs = Procs()
    results: list[Result] = []
    extra: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="http-bench-"))
    os.chmod(tmp, 0o755)  # nginx workers may run as another user
    try:
        # The 100k-anchor server takes ~40 s to index: start it first.
        syn_port = free_port()
        syn_log = tmp / "synthetic.log"
        say(f"starting the synthetic server ({args.anchors} anchors); indexing takes a while")
        syn = procs.start([sys.executable, str(HERE / "synthetic.py"), "serve", "--port",
                           str(syn_port), "--anchors", str(args.anchors)], syn_log,
                          stdout=subprocess.PIPE)

        root, data, static = tmp / "root", tmp / "data", tmp / "static"
        synthetic.make_content_root(root)
        build = subprocess.run([sys.executable, "-m", "tourserver", "build", "--root",
                                str(root), "--data", str(data), "--json"],
                               capture_output=True, text=True, timeout=300, cwd=str(REPO))
        if build.returncode != 0:
            raise BenchError(f"tourserver build failed:\n{build.stdout}\n{build.stderr}")
        glb_name, glb_bytes, glb_path = high_variant(data)
        extra["glb"] = {"name": glb_name, "bytes": glb_bytes, "tier": "high"}
        say(f"built: high variant {glb_name} ({glb_bytes} bytes)")

        ready = read_json_line(syn, syn_log, 600)
        cell = ready["cell"]
        mcell = ready["median_cell"]
        extra["cell"] = {"cell": cell, "resolution": 8, "counts": ready["cell_counts"],
                         "catalog_anchors": ready["anchors"], "catalog_tours": ready["tours"],
                         "res8_cells_with_anchors": ready["cells_with_anchors"]}
        extra["cell_median"] = {"cell": mcell, "resolution": 8,
                                "counts": ready["median_cell_counts"]}
        say(f"synthetic server ready: busiest res-8 cell {cell} {ready['cell_counts']}, "
            f"median {mcell} {ready['median_cell_counts']}")
        syn_base = f"http://{HOST}:{syn_port}"

        manifest_path = f"/v1/tours/{TOUR_ID}"
        cell_path = f"/v1/cells/{cell}"
        cell_body = fetch(syn_base + cell_path)[2]
        mcell_path = f"/v1/cells/{mcell}"
        mcell_body = fetch(syn_base + mcell_path)[2]
        glb_url_path = f"/c/{glb_name}"
        c = args.connections
        d = args.duration

        for workers in (1, 2):
            ts, ts_port = start_tourserver(procs, tmp, root, data, workers)
            ts_base = f"http://{HOST}:{ts_port}"
            # nginx serves the very bytes tourserver sends for the dynamic documents.
            (static / "v1" / "tours").mkdir(parents=True, exist_ok=True)
            (static / "v1" / "cells").mkdir(parents=True, exist_ok=True)
            (static / "v1" / "tours" / TOUR_ID).write_bytes(fetch(ts_base + manifest_path)[2])
            (static / "v1" / "cells" / cell).write_bytes(cell_body)
            (static / "v1" / "cells" / mcell).write_bytes(mcell_body)
            ngx, ngx_port, _ = start_nginx(procs, nginx, tmp, workers, static, data / "blobs")
            ngx_base = f"http://{HOST}:{ngx_port}"

            size = same_body(ts_base + manifest_path, ngx_base + manifest_path,
                             "application/json")
            glb_size = same_body(ts_base + glb_url_path, ngx_base + glb_url_path,
                                 "model/gltf-binary")
            for server, base in (("tourserver", ts_base), ("nginx", ngx_base)):
                results.append(measure(wrk, "manifest", workers, server, base, manifest_path,
                                       size, c, d))
            for server, base in (("tourserver", ts_base), ("nginx", ngx_base)):
                results.append(measure(wrk, "glb", workers, server, base, glb_url_path,
                                       glb_size, c, d))
            if workers == 1:
                cell_size = same_body(syn_base + cell_path, ngx_base + cell_path,
                                      "application/json")
                extra["cell"]["body_bytes"] = cell_size
                for conns in sorted({c, 1}, reverse=True):
                    for server, base in (("tourserver", syn_base), ("nginx", ngx_base)):
                        results.append(measure(wrk, "cell", 1, server, base, cell_path,
                                               cell_size, conns, d))
                mcell_size = same_body(syn_base + mcell_path, ngx_base + mcell_path,
                                       "application/json")
                extra["cell_median"]["body_bytes"] = mcell_size
                for server, base in (("tourserver", syn_base), ("nginx", ngx_base)):
                    results.append(measure(wrk, "cell_median", 1, server, base, mcell_path,
                                           mcell_size, 1, d))
                procs.stop(syn)  # frees its memory before the 2-worker phase
            procs.stop(ts)
            procs.stop(ngx)
    finally:
        procs.stop_all()
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    info["loadavg_end"] = list(os.getloadavg())
    return summarise(args, info, extra, results)


def _find_result(results: list[Result], target: str, workers: int, server: str,
                 connections: int) -> Result | None:
    for r in results:
        if (r.target, r.workers, r.server, r.connections) == (target, workers, server,
                                                              connections):
            return r
    return None


def summarise(args: argparse.Namespace, info: dict, extra: dict,
              results: list[Result]) -> dict:
    ratios = []
    seen = []
    for r in results:
        key = (r.target, r.workers, r.connections)
        if key in seen:
            continue
        seen.append(key)
        ts = _find_result(results, *key[:2], "tourserver", key[2])
        ngx = _find_result(results, *key[:2], "nginx", key[2])
        if ts and ngx:
            ratios.append({
                "target": key[0], "workers": key[1], "connections": key[2],
                "rps_ratio": round(ts.rps / ngx.rps, 3) if ngx.rps else None,
                "p99_ratio": round(ts.p99_ms / ngx.p99_ms, 2) if ngx.p99_ms else None,
            })
    glb = {r["workers"]: r["rps_ratio"] for r in ratios if r["target"] == "glb"}
    cell_ts = {r.connections: r.p99_ms for r in results
               if r.target == "cell" and r.server == "tourserver"}
    median_ts = {r.connections: r.p99_ms for r in results
                 if r.target == "cell_median" and r.server == "tourserver"}
    targets = {
        "glb_rps_ratio_ge_0.5": {
            "by_workers": glb,
            "met": all(v is not None and v >= GLB_TARGET_RATIO for v in glb.values()),
        },
        "cell_p99_lt_5ms": {
            "p99_ms_by_connections": cell_ts,
            "met_at_1_connection": (cell_ts.get(1) or 1e9) < CELL_P99_TARGET_MS,
            f"met_at_{args.connections}_connections":
                (cell_ts.get(args.connections) or 1e9) < CELL_P99_TARGET_MS,
            "median_cell_p99_ms_by_connections": median_ts,
            "median_cell_met_at_1_connection": (median_ts.get(1) or 1e9) < CELL_P99_TARGET_MS,
        },
    }
    return {
        "benchmark": "http_serving",
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name] + sys.argv),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "params": {"duration_s": args.duration, "connections": args.connections,
                   "anchors": args.anchors, "warmup_s": WARMUP_S,
                   "wrk_threads": min(2, args.connections)},
        "machine": info,
        "content": extra,
        "results": [asdict(r) for r in results],
        "ratios": ratios,
        "targets": targets,
    }


def table(summary: dict) -> str:
    rows = [("target", "workers", "server", "conns", "bytes", "req/s", "p50 ms", "p90 ms",
             "p99 ms", "errors", "ts/nginx req/s")]
    ratio = {(r["target"], r["workers"], r["connections"]): r["rps_ratio"]
             for r in summary["ratios"]}
    for r in summary["results"]:
        key = (r["target"], r["workers"], r["connections"])
        rows.append((r["target"], str(r["workers"]), r["server"], str(r["connections"]),
                     str(r["body_bytes"]), f"{r['rps']:.1f}", f"{r['p50_ms']:.3f}",
                     f"{r['p90_ms']:.3f}", f"{r['p99_ms']:.3f}",
                     str(r["socket_errors"] + r["non_2xx"]),
                     f"{ratio.get(key, 0):.3f}" if r["server"] == "tourserver" else ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) if i >= 3 else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    t = summary["targets"]
    lines.append("")
    lines.append(f"1 MB GLB req/s ratio >= {GLB_TARGET_RATIO}: "
                 f"{t['glb_rps_ratio_ge_0.5']['by_workers']} -> "
                 f"{'met' if t['glb_rps_ratio_ge_0.5']['met'] else 'MISSED'}")
    cell = t["cell_p99_lt_5ms"]
    lines.append(f"cell p99 < {CELL_P99_TARGET_MS:g} ms ({summary['params']['anchors']} "
                 f"anchors), busiest cell by connections: {cell['p99_ms_by_connections']}; "
                 f"median cell: {cell['median_cell_p99_ms_by_connections']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object with every figure as the last line")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--anchors", type=int, default=100_000,
                        help="anchors in the synthetic catalog for the cell query")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args(argv)
    if not (1 <= args.duration <= 600 and 1 <= args.connections <= 1000
            and 1 <= args.anchors <= 1_000_000):
        parser.error("--duration 1..600, --connections 1..1000, --anchors 1..1000000")

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)  # unwinds through run()'s finally: cleanup

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        summary = run(args)
    except (BenchError, OSError, subprocess.SubprocessError) as exc:
        print(f"http_bench: {exc}", file=sys.stderr)
        return 1
    print(table(summary))
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
