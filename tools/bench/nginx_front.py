"""Content throughput through nginx in front of tourserver, against nginx alone.

    python tools/bench/nginx_front.py [--json] [--duration S] [--connections N] [--workers N]

The ~1 MB "high" GLB of the benchmark tour (tools/bench/synthetic.py), fetched with wrk
(-c32 by default) from three servers in one run, on loopback:

  front       nginx with the configuration `tourserver nginx-config` prints (/c/ from the
              blob store with tourserver's headers, everything else proxied to tourserver)
  nginx       nginx alone, a plain static location serving the same file (sendfile)
  tourserver  tourserver itself, for scale

Both nginx servers run `--workers` worker processes (default 1) and log every request to
a file. Shared, noisy machines: read the ratios (front / nginx), not the absolute figures.
`run()` returns every figure as a dict (tools/bench/http_bench.py reports it); needs nginx
and wrk on the PATH (or in /usr/sbin). Every process started here is killed on the way out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import synthetic  # noqa: E402  (tools/bench is not a package)
from common import (  # noqa: E402
    HOST,
    BenchError,
    Procs,
    cpu_model,
    fetch,
    find_tool,
    free_port,
    high_variant,
    run_wrk,
    wait_http,
)

from tourserver.http.nginx import NginxOptions, nginx_config  # noqa: E402

SCENE_ID = "bench-a-scene"
WARMUP_S = 2

HTTP_CONF = """\
daemon off;
{user}
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    default_type application/octet-stream;
    keepalive_timeout 15s;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{body}
}}
"""
# nginx alone: what anyone would write to serve the blob store, and nothing more.
PLAIN_SERVER = """\
    access_log {prefix}/access.log;
    server {{
        listen {host}:{port};
        location ~ "^/c/(([0-9a-f]{{2}})[0-9a-f]{{62}}\\.glb)$" {{
            alias {blobs}/$2/$1;
            types {{ model/gltf-binary glb; }}
            sendfile on;
            tcp_nopush on;
            add_header Cache-Control "public, max-age=31536000, immutable";
        }}
    }}
"""


def say(msg: str) -> None:
    print(f"[nginx_front] {msg}", file=sys.stderr, flush=True)


def _start_nginx(procs: Procs, binary: str, prefix: Path, workers: int, body: str,
                 url: str) -> subprocess.Popen:
    prefix.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(HTTP_CONF.format(user="user root;" if os.geteuid() == 0 else "",
                                     workers=workers, prefix=prefix, body=body))
    cmd = [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]
    check = subprocess.run(cmd + ["-t"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise BenchError(f"nginx -t failed:\n{check.stderr}")
    proc = procs.start(cmd, prefix / "stderr.log")
    wait_http(url, proc, prefix / "error.log", 60)
    return proc


def run(duration: int = 10, connections: int = 32, workers: int = 1,
        keep: bool = False) -> dict:
    """Measure; every figure in one dict (see the module docstring)."""
    nginx, wrk_bin = find_tool("nginx"), find_tool("wrk")
    if not (nginx and wrk_bin):
        raise BenchError("nginx and wrk are needed (Debian: apt-get install nginx wrk)")
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="nginx-front-"))
    os.chmod(tmp, 0o755)  # nginx workers may run as another user
    results: dict[str, dict] = {}
    try:
        root, data = tmp / "root", tmp / "data"
        synthetic.make_content_root(root)
        build = subprocess.run([sys.executable, "-m", "tourserver", "build", "--root",
                                str(root), "--data", str(data), "--json"], cwd=REPO,
                               capture_output=True, text=True, timeout=300)
        if build.returncode != 0:
            raise BenchError(f"tourserver build failed:\n{build.stdout}\n{build.stderr}")
        name, size, _ = high_variant(data, SCENE_ID)
        path = f"/c/{name}"
        say(f"built: high variant {name} ({size} bytes)")

        ts_port = free_port()
        ts_log = tmp / "tourserver.log"
        ts = procs.start([sys.executable, "-m", "tourserver", "serve", "--root", str(root),
                          "--data", str(data), "--host", HOST, "--port", str(ts_port),
                          "--no-build"], ts_log)
        wait_http(f"http://{HOST}:{ts_port}/v1/health", ts, ts_log, 60)

        front_port, plain_port = free_port(), free_port()
        block = nginx_config(NginxOptions(
            data_dir=data, upstreams=(f"{HOST}:{ts_port}",), listen=f"{HOST}:{front_port}",
            server_names=("localhost",), log_dir=tmp / "front"))
        _start_nginx(procs, nginx, tmp / "front", workers, block,
                     f"http://{HOST}:{front_port}{path}")
        _start_nginx(procs, nginx, tmp / "plain", workers,
                     PLAIN_SERVER.format(prefix=tmp / "plain", host=HOST, port=plain_port,
                                         blobs=data / "blobs"),
                     f"http://{HOST}:{plain_port}{path}")

        servers = {"front": front_port, "nginx": plain_port, "tourserver": ts_port}
        bodies = {server: fetch(f"http://{HOST}:{port}{path}")[2]
                  for server, port in servers.items()}
        if any(len(b) != size or b != bodies["nginx"] for b in bodies.values()):
            raise BenchError("the three servers do not send the same bytes")
        for server, port in servers.items():
            url = f"http://{HOST}:{port}{path}"
            run_wrk(wrk_bin, url, connections, WARMUP_S)  # warm-up, discarded
            results[server] = r = run_wrk(wrk_bin, url, connections, duration)
            r["errors"] = r["socket_errors"] + r["non_2xx"]
            say(f"{server:<10} c={connections} {r['rps']:9.1f} req/s  p50 {r['p50_ms']:.3f} ms"
                f"  p99 {r['p99_ms']:.3f} ms  errors {r['errors']}")
            if r["errors"]:
                raise BenchError(f"{server}: {r['errors']} errors or non-2xx responses")
    finally:
        procs.stop_all()
        if keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    def ratio(a: str, b: str) -> float:
        return round(results[a]["rps"] / results[b]["rps"], 3)

    return {
        "benchmark": "nginx_front",
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name] + sys.argv),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "params": {"duration_s": duration, "connections": connections,
                   "nginx_workers": workers, "warmup_s": WARMUP_S},
        "machine": {"cpu": cpu_model(), "cpus_usable": len(os.sched_getaffinity(0)),
                    "loadavg_end": list(os.getloadavg())},
        "glb": {"name": name, "bytes": size},
        "results": results,
        "ratios": {"front_vs_nginx_rps": ratio("front", "nginx"),
                   "tourserver_vs_nginx_rps": ratio("tourserver", "nginx")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--workers", type=int, default=1, help="nginx worker processes")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args(argv)
    if not (1 <= args.duration <= 600 and 1 <= args.connections <= 1000
            and 1 <= args.workers <= 64):
        parser.error("--duration 1..600, --connections 1..1000, --workers 1..64")

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)  # unwinds through run()'s finally: cleanup

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        summary = run(args.duration, args.connections, args.workers, args.keep)
    except (BenchError, OSError, subprocess.SubprocessError) as exc:
        print(f"nginx_front: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, sort_keys=True))
    else:
        for server, r in summary["results"].items():
            print(f"{server:<10} {r['rps']:9.1f} req/s  p50 {r['p50_ms']:.3f} ms  "
                  f"p99 {r['p99_ms']:.3f} ms")
        print(f"front / nginx alone: {summary['ratios']['front_vs_nginx_rps']}  "
              f"tourserver / nginx alone: {summary['ratios']['tourserver_vs_nginx_rps']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
