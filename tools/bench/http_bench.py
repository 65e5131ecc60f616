"""HTTP serving benchmark: tourserver against nginx serving the same bytes, on loopback.

    python tools/bench/http_bench.py [--json] [--duration S] [--connections N] [--anchors N]

Four targets, each measured with wrk against tourserver and against nginx in the same run
(shared, noisy machines: read the ratios, not the absolute figures):

  manifest     GET /v1/tours/bench          nginx: the same JSON bytes as a static file
  cell         GET /v1/cells/<busy res-8>   tourserver serving a published build of ~100k
                                            anchors (tools/bench/synthetic.py); nginx: the
                                            same response bytes, static
  cell_median  the same with a median res-8 cell, 1 connection
  glb          GET /c/<sha256>.glb          the ~1 MB "high" variant; nginx: the same file
                                            from the blob store with sendfile

wrk sends `Accept-Encoding: gzip`, as phones do, to both servers: tourserver answers JSON
documents with the gzip copy it keeps; nginx sends the very same .gz bytes (gzip_static).
tourserver runs with 1 worker, then `--workers 2`; nginx with worker_processes 1, then 2.
Both servers log every request to a file (tourserver: its production JSON logging on
stderr, redirected; nginx: the combined access log).

Start-up is reported too: how long loading the 100k-anchor build takes in a fresh process
(`synthetic.py load`), and how long `tourserver serve` takes from its start until every
worker serves (interpreter, imports, load, binding).

Installs nginx and wrk with apt-get when they are missing; downloads nothing else. Binds
127.0.0.1 only. Every process started here is killed (process group) on the way out.
With --json the last line of stdout is one JSON object with every figure.
Then tools/bench/nginx_front.py: the 1 MB GLB through nginx in front of tourserver
(the `tourserver nginx-config` block, serving /c/ from the blob store) against nginx alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import nginx_front  # noqa: E402  (tools/bench is not a package)
import synthetic  # noqa: E402
from common import (  # noqa: E402
    BenchError,
    Procs,
    cpu_model,
    fetch,
    find_tool,
    free_port,
    high_variant,
    run_wrk,
    tail,
    wait_http,
)

HOST = "127.0.0.1"
TOUR_ID = synthetic.MINI_TOUR["id"]
SCENE_ID = "bench-a-scene"
WARMUP_S = 2
GLB_TARGET_RATIO = 0.5
CELL_P99_TARGET_MS = 5.0
START_TARGET_S = 2.0


def say(msg: str) -> None:
    print(f"[http_bench] {msg}", file=sys.stderr, flush=True)


# ---- tools ---------------------------------------------------------------------------------
def ensure_tools() -> tuple[str, str]:
    """Paths of nginx and wrk, installing both with apt-get if either is missing."""
    nginx, wrk = find_tool("nginx"), find_tool("wrk")
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
    nginx, wrk = find_tool("nginx"), find_tool("wrk")
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
# What phones send, and what wrk sends to both servers.
ACCEPT_GZIP = "gzip, deflate"


SERVING = re.compile(r'"msg":\s*"serving"')  # each process's JSON line once it listens


def wait_log_count(log: Path, pattern: re.Pattern, count: int, proc: subprocess.Popen,
                   timeout_s: float, poll_s: float = 0.1) -> None:
    """Until `pattern` matches `count` times in the log (every worker said it is serving)."""
    for _ in range(int(timeout_s / poll_s) + 1):
        if proc.poll() is not None:
            raise BenchError(f"server exited with {proc.returncode}:\n{tail(log)}")
        try:
            if len(pattern.findall(log.read_text(errors="replace"))) >= count:
                return
        except OSError:
            pass
        time.sleep(poll_s)
    raise BenchError(f"{count} worker(s) did not report ready within {timeout_s:g} s")


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
            gzip_static on;  # <file>.gz, when there is one: the bytes tourserver sends
            gzip_vary on;
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
    run_wrk(wrk, url, connections, WARMUP_S, ACCEPT_GZIP)  # warm-up, discarded
    r = run_wrk(wrk, url, connections, duration, ACCEPT_GZIP)
    res = Result(target, workers, server, connections, path, body_bytes, r["rps"], r["p50_ms"],
                 r["p90_ms"], r["p99_ms"], r["requests"], r["socket_errors"], r["non_2xx"])
    say(f"{target:<9} w{workers} {server:<10} c={connections:<3} {res.rps:10.1f} req/s  "
        f"p50 {res.p50_ms:.3f} ms  p99 {res.p99_ms:.3f} ms"
        + (f"  ({res.non_2xx} non-2xx!)" if res.non_2xx else ""))
    if res.non_2xx:
        raise BenchError(f"{server} answered {res.non_2xx} non-2xx responses for {url}")
    return res


def same_body(a_url: str, b_url: str, expect_type: str) -> int:
    """Both servers give 200 and the same bytes, with the same Content-Encoding and the
    expected type, to a client accepting gzip; returns the size sent."""
    sa, ha, ba = fetch(a_url, ACCEPT_GZIP)
    sb, hb, bb = fetch(b_url, ACCEPT_GZIP)
    if sa != 200 or sb != 200:
        raise BenchError(f"status {sa} / {sb} for {a_url} / {b_url}")
    if hashlib.sha256(ba).digest() != hashlib.sha256(bb).digest():
        raise BenchError(f"{a_url} and {b_url} differ ({len(ba)} / {len(bb)} bytes)")
    if ha.get("Content-Encoding") != hb.get("Content-Encoding"):
        raise BenchError(f"Content-Encoding {ha.get('Content-Encoding')!r} / "
                         f"{hb.get('Content-Encoding')!r} for {a_url} / {b_url}")
    for h in (ha, hb):
        if not h.get("Content-Type", "").startswith(expect_type):
            raise BenchError(f"unexpected Content-Type {h.get('Content-Type')!r}")
    return len(ba)


def publish_static(static: Path, path: str, url: str) -> None:
    """Give nginx what tourserver sends for `url`: the JSON file and, when tourserver
    answers gzip to a client accepting it, the same compressed bytes as <file>.gz."""
    target = static / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(fetch(url)[2])
    _, headers, packed = fetch(url, ACCEPT_GZIP)
    gz = target.with_name(target.name + ".gz")
    if headers.get("Content-Encoding") == "gzip":
        gz.write_bytes(packed)
    else:
        gz.unlink(missing_ok=True)


# ---- the run -------------------------------------------------------------------------------
def start_tourserver(procs: Procs, tmp: Path, root: Path, data: Path, workers: int,
                     name: str = "tourserver") -> tuple[subprocess.Popen, int, float]:
    """Start `tourserver serve --no-build`; returns the process, its port and the seconds
    from its start until every worker said it serves."""
    port = free_port()
    log = tmp / f"{name}-w{workers}.log"
    cmd = [sys.executable, "-m", "tourserver", "serve", "--root", str(root), "--data", str(data),
           "--host", HOST, "--port", str(port), "--workers", str(workers), "--no-build",
           "--log-format", "json"]  # production logging, as a collector would read it
    started = time.monotonic()
    proc = procs.start(cmd, log)
    wait_log_count(log, SERVING, workers, proc, 120, poll_s=0.02)
    ready_s = time.monotonic() - started
    wait_http(f"http://{HOST}:{port}/v1/health", proc, log, 30)
    return proc, port, ready_s


def make_synthetic(tmp: Path, anchors: int) -> tuple[Path, dict, dict]:
    """Publish the synthetic build (synthetic.py data) and time loading it in a fresh
    process (synthetic.py load): (data dir, its description, the load times)."""
    data = tmp / "synthetic-data"
    say(f"publishing the synthetic build ({anchors} anchors): indexing takes a while")
    made = subprocess.run([sys.executable, str(HERE / "synthetic.py"), "data", str(data),
                           "--anchors", str(anchors)], capture_output=True, text=True,
                          timeout=1800, cwd=str(REPO))
    if made.returncode != 0:
        raise BenchError(f"synthetic.py data failed:\n{made.stderr[-2000:]}")
    info = json.loads(made.stdout.strip().splitlines()[-1])
    loads = []
    for _ in range(3):  # the median of three fresh processes
        out = subprocess.run([sys.executable, str(HERE / "synthetic.py"), "load", str(data)],
                             capture_output=True, text=True, timeout=300, cwd=str(REPO))
        if out.returncode != 0:
            raise BenchError(f"synthetic.py load failed:\n{out.stderr[-2000:]}")
        loads.append(json.loads(out.stdout.strip().splitlines()[-1]))
    load = sorted(loads, key=lambda x: x["load_s"])[1]
    say(f"synthetic build: index {info['index_s']} s at build; load {load['load_s']} s "
        f"in a fresh process; busiest res-8 cell {info['cell']} {info['cell_counts']}, "
        f"median {info['median_cell']} {info['median_cell_counts']}")
    return data, info, load


def run(args: argparse.Namespace) -> dict:
    nginx, wrk = ensure_tools()
    info = machine_info(nginx, wrk)
    procs = Procs()
    results: list[Result] = []
    extra: dict = {"startup": {}}
    tmp = Path(tempfile.mkdtemp(prefix="http-bench-"))
    os.chmod(tmp, 0o755)  # nginx workers may run as another user
    try:
        syn_data, syn, load = make_synthetic(tmp, args.anchors)
        extra["startup"] = {"anchors": args.anchors, "index_at_build_s": syn["index_s"],
                            "load_s": load["load_s"], "serve_ready_s": {}}
        cell, mcell = syn["cell"], syn["median_cell"]
        extra["cell"] = {"cell": cell, "resolution": 8, "counts": syn["cell_counts"],
                         "catalog_anchors": syn["anchors"], "catalog_tours": syn["tours"],
                         "res8_cells_with_anchors": syn["cells_with_anchors"]}
        extra["cell_median"] = {"cell": mcell, "resolution": 8,
                                "counts": syn["median_cell_counts"]}

        root, data, static = tmp / "root", tmp / "data", tmp / "static"
        synthetic.make_content_root(root)
        build = subprocess.run([sys.executable, "-m", "tourserver", "build", "--root",
                                str(root), "--data", str(data), "--json"],
                               capture_output=True, text=True, timeout=300, cwd=str(REPO))
        if build.returncode != 0:
            raise BenchError(f"tourserver build failed:\n{build.stdout}\n{build.stderr}")
        glb_name, glb_bytes, glb_path = high_variant(data, SCENE_ID)
        extra["glb"] = {"name": glb_name, "bytes": glb_bytes, "tier": "high"}
        say(f"built: high variant {glb_name} ({glb_bytes} bytes)")

        manifest_path = f"/v1/tours/{TOUR_ID}"
        cell_path = f"/v1/cells/{cell}"
        mcell_path = f"/v1/cells/{mcell}"
        glb_url_path = f"/c/{glb_name}"
        c = args.connections
        d = args.duration

        for workers in (1, 2):
            ts, ts_port, _ = start_tourserver(procs, tmp, root, data, workers)
            syn_ts, syn_port, ready_s = start_tourserver(procs, tmp, root, syn_data, workers,
                                                         name="synthetic")
            extra["startup"]["serve_ready_s"][workers] = round(ready_s, 2)
            say(f"the {args.anchors}-anchor server with {workers} worker(s) served "
                f"{ready_s:.2f} s after it started")
            ts_base = f"http://{HOST}:{ts_port}"
            syn_base = f"http://{HOST}:{syn_port}"
            # nginx serves the very bytes tourserver sends for the dynamic documents.
            publish_static(static, manifest_path, ts_base + manifest_path)
            publish_static(static, cell_path, syn_base + cell_path)
            publish_static(static, mcell_path, syn_base + mcell_path)
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
            cell_size = same_body(syn_base + cell_path, ngx_base + cell_path,
                                  "application/json")
            extra["cell"]["body_bytes"] = cell_size
            extra["cell"]["identity_bytes"] = len(fetch(syn_base + cell_path)[2])
            for conns in sorted({c, 1}, reverse=True):
                for server, base in (("tourserver", syn_base), ("nginx", ngx_base)):
                    results.append(measure(wrk, "cell", workers, server, base, cell_path,
                                           cell_size, conns, d))
            mcell_size = same_body(syn_base + mcell_path, ngx_base + mcell_path,
                                   "application/json")
            extra["cell_median"]["body_bytes"] = mcell_size
            for server, base in (("tourserver", syn_base), ("nginx", ngx_base)):
                results.append(measure(wrk, "cell_median", workers, server, base, mcell_path,
                                       mcell_size, 1, d))
            for proc in (syn_ts, ts, ngx):
                procs.stop(proc)
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

    def p99(target: str) -> dict[str, float | None]:
        return {f"w{r.workers}_c{r.connections}": r.p99_ms for r in results
                if r.target == target and r.server == "tourserver"}

    cell_ts, median_ts = p99("cell"), p99("cell_median")
    c = args.connections
    startup = extra.get("startup", {})
    ready = startup.get("serve_ready_s", {})
    targets = {
        "glb_rps_ratio_ge_0.5": {
            "by_workers": glb,
            "met": all(v is not None and v >= GLB_TARGET_RATIO for v in glb.values()),
        },
        "cell_p99_lt_5ms": {
            "p99_ms_by_workers_and_connections": cell_ts,
            "met_at_1_connection": all((cell_ts.get(f"w{w}_c1") or 1e9) < CELL_P99_TARGET_MS
                                       for w in (1, 2)),
            f"met_at_{c}_connections": {
                w: (cell_ts.get(f"w{w}_c{c}") or 1e9) < CELL_P99_TARGET_MS for w in (1, 2)},
            "median_cell_p99_ms": median_ts,
        },
        "start_lt_2s": {
            "load_s": startup.get("load_s"),
            "serve_ready_s_by_workers": ready,
            "load_met": (startup.get("load_s") or 1e9) < START_TARGET_S,
            "serve_ready_met": bool(ready) and all(v < START_TARGET_S for v in ready.values()),
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
                 f"anchors), busiest cell: {cell['p99_ms_by_workers_and_connections']}; "
                 f"median cell: {cell['median_cell_p99_ms']}")
    start = t["start_lt_2s"]
    lines.append(f"start < {START_TARGET_S:g} s with {summary['params']['anchors']} anchors: "
                 f"load {start['load_s']} s in a fresh process "
                 f"({'met' if start['load_met'] else 'MISSED'}); `tourserver serve` until "
                 f"every worker serves, by workers: {start['serve_ready_s_by_workers']} "
                 f"({'met' if start['serve_ready_met'] else 'MISSED'})")
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
        # Content through nginx in front (tourserver nginx-config) against nginx alone.
        front = nginx_front.run(duration=args.duration, connections=args.connections)
    except (BenchError, OSError, subprocess.SubprocessError) as exc:
        print(f"http_bench: {exc}", file=sys.stderr)
        return 1
    summary["nginx_front"] = {"results": front["results"], "ratios": front["ratios"]}
    print(table(summary))
    print(f"1 MB GLB through nginx in front (nginx-config) vs nginx alone: "
          f"{front['ratios']['front_vs_nginx_rps']:.3f} of its req/s "
          f"(tourserver alone: {front['ratios']['tourserver_vs_nginx_rps']:.3f})")
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
