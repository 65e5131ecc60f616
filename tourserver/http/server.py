"""Running the server: one or N worker processes on one port, a request-head timeout,
JSON errors for requests too malformed to reach a handler, graceful shutdown, and SIGHUP
to pick up a newly published build at once (each worker also watches for it, see reload)."""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Callable
from multiprocessing.connection import wait

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_server import Server

from tourserver.config import Settings
from tourserver.errors import TourError
from tourserver.http.app import create_app
from tourserver.http.keys import RELOADER
from tourserver.http.reload import POLL_S
from tourserver.http.responses import error_body
from tourserver.store.catalog import Catalog, json_bytes

log = logging.getLogger("tourserver.server")
SHUTDOWN_GRACE_S = 10.0


class _GuardedHandler(RequestHandler):
    """aiohttp's protocol plus a deadline for the request head (slowloris), and JSON for
    requests the parser rejects (oversized lines and headers, garbage)."""

    head_timeout_s = 10.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_timer = asyncio.get_running_loop().call_later(
            self.head_timeout_s, self._on_head_timeout)

    def set_parser(self, parser, data_received_cb=None) -> None:
        # aiohttp calls this when a WebSocket is upgraded: from here on the bytes are
        # frames, never a request head, so the head deadline must never fire (it would
        # write an HTTP 408 into the frame stream).
        self._socket_upgraded = True
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
        self._head_timer = None
        super().set_parser(parser, data_received_cb)

    def data_received(self, data: bytes) -> None:
        if getattr(self, "_socket_upgraded", False):
            super().data_received(data)
            return
        before = self._request_count
        super().data_received(data)
        timer = getattr(self, "_head_timer", None)
        if self._request_count != before:
            if timer is not None:
                timer.cancel()
            self._head_timer = None
        elif timer is None and data:
            # First bytes of the next request on a kept-alive connection: start the clock.
            self._head_timer = asyncio.get_running_loop().call_later(
                self.head_timeout_s, self._on_head_timeout)

    def connection_lost(self, exc: BaseException | None) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(exc)

    def _on_head_timeout(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        body = json_bytes(error_body("header_timeout", "request head not received in "
                                     f"{self.head_timeout_s:g} s"))
        transport.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                        b"Connection: close\r\nContent-Length: " + str(len(body)).encode()
                        + b"\r\n\r\n" + body)
        transport.close()

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            return super().handle_error(request, status, exc, message)
        text = (message or str(exc) or "bad request").splitlines()[0][:300]
        code = "request_too_large" if "more than" in text or "too long" in text else "bad_request"
        log.info("rejected malformed request: %s", text)
        response = web.Response(status=status, body=json_bytes(error_body(code, text)),
                                content_type="application/json")
        response.force_close()
        return response


class _GuardedServer(Server):
    def __call__(self) -> RequestHandler:
        return _GuardedHandler(self, loop=self._loop, **self._kwargs)


class _GuardedRunner(web.AppRunner):
    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _GuardedServer
        return server


async def start(settings: Settings, catalog: Catalog, *, reuse_port: bool = False,
                sock: socket.socket | None = None,
                reload_poll_s: float | None = POLL_S) -> web.AppRunner:
    """Start serving in the running loop; returns the runner (call .cleanup() to stop).
    Builds published to settings.data_dir are swapped in as they appear (looked for every
    `reload_poll_s` seconds; 0: only on SIGHUP; None: never)."""
    _GuardedHandler.head_timeout_s = settings.limits.header_timeout_s
    # The catalog lives as long as the process: move it out of the collector's sight, or
    # every full collection walks hundreds of thousands of objects (~250 ms at 100k stops).
    gc.collect()
    gc.freeze()
    app = create_app(settings, catalog, reload_poll_s=reload_poll_s)
    runner = _GuardedRunner(
        app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S,
        keepalive_timeout=settings.limits.keepalive_timeout_s,
        max_line_size=settings.limits.max_line_size,
        max_field_size=settings.limits.max_field_size,
        handle_signals=False)
    await runner.setup()
    site: web.BaseSite
    if sock is not None:
        site = web.SockSite(runner, sock)
    else:
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise _listen_failed(settings, exc) from None
    return runner


def _listen_failed(settings: Settings, exc: OSError) -> TourError:
    return TourError(f"cannot listen on {settings.host}:{settings.port}: "
                     f"{exc.strerror or exc}", code="listen_failed")


def _check_port_free(settings: Settings) -> None:
    """Bind and release the port as the workers will (SO_REUSEPORT), so that a port held
    by another program fails once, here, before any worker starts."""
    try:
        infos = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            probe.bind(address)
    except OSError as exc:
        raise _listen_failed(settings, exc) from None


async def _serve_until_signal(settings: Settings, catalog: Catalog, reuse_port: bool,
                              ready: Callable[[], None] | None = None,
                              reload_poll_s: float = POLL_S) -> None:
    runner = await start(settings, catalog, reuse_port=reuse_port,
                         reload_poll_s=reload_poll_s)
    if ready is not None:
        ready()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, runner.app[RELOADER].poke)
    log.info("serving", extra={"server": {"host": settings.host, "port": settings.port,
                                          "pid": os.getpid(), "build": catalog.build_id}})
    await stop.wait()
    log.info("shutting down: finishing requests in flight")
    await runner.cleanup()  # stops accepting, waits for handlers up to the grace period


def serve(settings: Settings, load_catalog: Callable[[], Catalog],
          ready: Callable[[], None] | None = None, reload_poll_s: float = POLL_S) -> int:
    """Serve in this process, or supervise `settings.workers` processes sharing the port.
    `ready` is called once the port is bound (with workers: once it is known to be free
    for them). Raises TourError if it cannot be; returns 1 if a worker failed, else 0.
    Every process looks for a newly published build every `reload_poll_s` seconds (0: only
    on SIGHUP, which the supervisor forwards to its workers)."""
    # SIGHUP means "reload" (as for nginx), never "exit": ignored until the handlers are in
    # place; spawned workers inherit the ignore until their own loop takes it over.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if settings.workers <= 1:
        asyncio.run(_serve_until_signal(settings, load_catalog(), False, ready, reload_poll_s))
        return 0
    _check_port_free(settings)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(settings, load_catalog, reload_poll_s),
                         daemon=False)
             for _ in range(settings.workers)]
    for p in procs:
        p.start()
    if ready is not None:
        ready()
    stopping = False

    def stop_all(_signum=None, _frame=None):
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    def reload_all(_signum=None, _frame=None):
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGHUP, reload_all)
    alive = procs
    while alive:
        wait([p.sentinel for p in alive])  # until one of them exits
        alive = [p for p in alive if p.is_alive()]
        if not stopping and any(_failed(p) for p in procs):
            stop_all()  # one worker failing takes the others down: no half-sized server
    return 1 if any(_failed(p) for p in procs) else 0


def _failed(proc: multiprocessing.process.BaseProcess) -> bool:
    # A worker the stop signal ended (negative exit code) shut down as asked.
    return (proc.exitcode or 0) > 0


def _worker(settings: Settings, load_catalog: Callable[[], Catalog],
            reload_poll_s: float = POLL_S) -> None:
    from tourserver.logs import setup_logging

    setup_logging()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the loop's handler takes over
    try:
        asyncio.run(_serve_until_signal(settings, load_catalog(), reuse_port=True,
                                        reload_poll_s=reload_poll_s))
    except TourError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(1)
