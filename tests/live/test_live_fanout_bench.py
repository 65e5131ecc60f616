"""tools/bench/live_fanout.py end to end, small: a real server, 40 attendees in two worker
processes, a naive server for the burst comparison. The figures are not judged here (the
machine is shared); that the bench measures everything it claims to, and loses nothing, is."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from support import REPO

BENCH = REPO / "tools" / "bench" / "live_fanout.py"
NUMERIC = ("p50_ms", "p99_ms", "deliveries_per_s", "lost", "kb_per_connection",
           "cpu_us_per_delivery", "skew_p99_ms", "ratio_vs_naive", "attendees", "rate",
           "seconds", "processes", "connect_s", "server_cpu_share",
           "burst_deliveries_per_s", "naive_burst_deliveries_per_s")
TARGETS = ("p99_ms", "skew_p99_ms", "cpu_us_per_delivery", "kb_per_connection",
           "ratio_vs_naive")


def test_small_fanout_run_measures_everything_and_loses_nothing():
    cmd = [sys.executable, str(BENCH), "--attendees", "40", "--rate", "10", "--seconds", "2",
           "--burst", "20", "--processes", "2", "--json"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    for key in NUMERIC:
        value = result[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), key
        assert math.isfinite(value), (key, value)
    assert isinstance(result["command"], str) and "--attendees 40" in result["command"]
    assert (result["attendees"], result["processes"]) == (40, 2)
    assert result["connected"] == 40 and result["connect_failures"] == 0

    # every cue reached every attendee, once and in order, on both servers
    assert result["lost"] == 0, {k: result[k] for k in ("missing", "duplicates",
                                                        "out_of_order", "host_errors")}
    assert result["host_errors"] == 0
    assert result["deliveries"] == 40 * 20
    assert result["burst_deliveries"] == 40 * 20
    assert result["naive_burst_deliveries"] == 40 * 20 and result["naive_lost"] == 0

    assert result["deliveries_per_s"] > 0
    assert result["p99_ms"] >= result["p50_ms"] > 0
    assert result["skew_samples"] == 40 * 20  # every steady cue was played by every attendee
    assert result["cpu_us_per_delivery"] > 0
    assert result["naive_burst_deliveries_per_s"] > 0 and result["ratio_vs_naive"] > 0

    for name in TARGETS:
        target = result["targets"][name]
        assert target["value"] == result[name]
        assert isinstance(target["met"], bool)
