"""Helpers for live-channel tests: a real `tourserver serve` process on a small built tour,
API calls, and real websocket clients (tourserver.live.client, on the websockets library)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from support import REPO

from tourserver.live.client import LiveClient
from tourserver.store.keys import KeyStore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rfc3339(delta_s: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta_s)).isoformat().replace("+00:00", "Z")


class LiveServer:
    """`tourserver serve` on a private copy of a built data directory."""

    def __init__(self, data: Path, root: Path, *extra: str, env: dict | None = None,
                 port: int | None = None):
        self.data, self.root, self.extra = data, root, extra
        self.env = {**os.environ, **(env or {})}
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.key = KeyStore(data).create("host", "tests")[1]
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.log = self.data.parent / f"serve-{self.port}-{time.monotonic_ns()}.log"
        self._log_fh = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tourserver", "serve", "--data", str(self.data),
             "--root", str(self.root), "--port", str(self.port), "--no-build", *self.extra],
            cwd=REPO, stdout=self._log_fh, stderr=subprocess.STDOUT, env=self.env,
            start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.log.read_text()}")
            try:
                self.call("GET", "/v1/health")
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"serve did not come up:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log_fh.close()
        return self.proc.returncode

    def call(self, method: str, path: str, body: object = None, headers: dict | None = None
             ) -> tuple[int, dict, bytes]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, method: str, path: str, body: object = None, headers: dict | None = None,
             status: int = 200) -> dict:
        got, _, raw = self.call(method, path, body, headers)
        assert got == status, (got, raw[:500])
        return json.loads(raw)

    def create_event(self, **fields) -> dict:
        body = {"title": "Chaotianmen light show", "tour": "mini",
                "starts_at": rfc3339(-1), "visibility": "public", **fields}
        return self.json("POST", "/v1/events", body,
                         {"Authorization": f"Bearer {self.key}"}, status=201)

    def ticket(self, event_id: str, **body) -> dict:
        return self.json("POST", f"/v1/events/{event_id}/tickets", body, status=201)

    async def attendee(self, event_id: str, *, from_seq: int | None = None, name: str = "",
                       ticket: str | None = None) -> LiveClient:
        if ticket is None:
            ticket = (await asyncio.to_thread(self.ticket, event_id, name=name))["ticket"]
        return await LiveClient.connect(self.base, event_id, ticket, from_seq=from_seq)

    async def host(self, event: dict, from_seq: int | None = None) -> LiveClient:
        client = await LiveClient.connect(self.base, event["id"], event["host_token"],
                                          from_seq=from_seq)
        await client.sync_clock(4)
        return client


def private_data(built: Path, where: Path) -> Path:
    target = where / "data"
    shutil.copytree(built, target)
    for name in ("live.sqlite", "live.sqlite-wal", "live.sqlite-shm", "keys.json",
                 "live-secret"):
        (target / name).unlink(missing_ok=True)
    return target


async def drain(client: LiveClient, kind: str, count: int, timeout: float = 20.0) -> list[dict]:
    """The next `count` messages of `kind` (others skipped)."""
    return [await client.next(kind, timeout) for _ in range(count)]


async def quiet(client: LiveClient, kind: str, seconds: float = 0.5) -> bool:
    """True if no message of `kind` arrives within `seconds`."""
    try:
        await client.next(kind, seconds)
    except TimeoutError:
        return True
    return False


class RedisServer:
    """A private redis-server on a free loopback port (Debian's package, installed by
    .ci/run); nothing saved to disk."""

    def __init__(self, where: Path):
        binary = shutil.which("redis-server")
        assert binary is not None
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(where)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
