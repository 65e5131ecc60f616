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
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong

from tourserver.config import Settings
from tourserver.errors import TourError
from tourserver.http.app import create_app
from tourserver.http.keys import RELOADER
from tourserver.http.reload import POLL_S
from tourserver.http.responses import error_body
from tourserver.store.catalog import Catalog, json_bytes

log = logging.getLogger("tourserver.server")
SHUTDOWN_GRACE_S = 10.0


# aiohttp has no public option for a request-head deadline or for the body of the errors its
# parser answers, and no public way to give an Application's server another protocol class.
# Everything here is public API (web.Server's constructor and attributes, RequestHandler's
# protocol methods and handle_error) except one hook, _GuardedRunner._make_server: that is
# why pyproject pins aiohttp to the minor versions tested. The behaviour relied on is
# tested in tests/http/test_http_letter.py and tests/e2e/test_serve.py: a slow head gets a
# 408, a kept-alive connection serves its next request, a WebSocket is never hit by the
# head deadline, and the parser's rejections are JSON 400/414/431.


class _GuardedHandler(web.RequestHandler):
    """aiohttp's protocol plus a deadline for each request head (slowloris), and JSON for
    requests the parser rejects (oversized lines and headers, garbage)."""

    def __init__(self, manager: _GuardedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout_s = manager.head_timeout_s
        self._head_timer: asyncio.TimerHandle | None = None
        # True from a complete head until its handler returns: the bytes that arrive then
        # are its body or, once upgraded, WebSocket frames; never a head to time.
        self._in_request = False

    def _arm(self) -> None:
        self._head_timer = asyncio.get_running_loop().call_later(
            self._head_timeout_s, self._on_head_timeout)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def head_received(self) -> None:
        """A request head is complete (the server's request factory is making it)."""
        self._disarm()
        self._in_request = True

    def request_done(self) -> None:
        self._in_request = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()  # an idle new connection gets a 408 too

    def data_received(self, data: bytes) -> None:
        if data and not self._in_request and self._head_timer is None:
            self._arm()  # first bytes of the next request on a kept-alive connection
        super().data_received(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _on_head_timeout(self) -> None:
        self._head_timer = None
        transport = self.transport
        if self._in_request or transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size():
            # The previous response is still going out to a client that reads: writing a
            # 408 now would land inside its body. Look again later.
            self._arm()
            return
        body = json_bytes(error_body("header_timeout", "request head not received in "
                                     f"{self._head_timeout_s:g} s"))
        transport.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                        b"Connection: close\r\nContent-Length: " + str(len(body)).encode()
                        + b"\r\n\r\n" + body)
        transport.close()

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        # Replaces aiohttp's, which logs the client's address and answers in text. The log
        # line names the status and code only: the refused bytes may hold a path or query.
        if request.writer.output_size > 0:  # a response is half sent: nothing can follow
            raise ConnectionError("response already started; cannot send an error")
        if status >= 500:
            log.error("request failed in the protocol (%d)", status, exc_info=exc)
            code, text = (("timeout", "the request took too long") if status == 504 else
                          ("internal", "internal error; the server log has details"))
        else:
            status, code, text = _rejection(exc, message or str(exc or "") or "bad request")
            log.info("rejected a malformed request: %d %s", status, code)
        response = web.Response(status=status, body=json_bytes(error_body(code, text)),
                                content_type="application/json")
        response.force_close()
        return response


def _rejection(exc: BaseException | None, message: str) -> tuple[int, str, str]:
    """Status, code and message for what the parser refused: a request line too long is
    414, header fields too long or too many are 431 (RFC 9110 §15.5.15, RFC 6585 §5)."""
    if isinstance(exc, LineTooLong):
        line = exc.args[0] if exc.args else b""
        line = bytes(line) if isinstance(line, bytes | bytearray) else b""
        limit = exc.args[1] if len(exc.args) > 1 else "the limit of"
        # The C parser reports the target alone, the pure-Python one the whole line.
        target = line.split(b" ", 1)[1] if line[:1].isalpha() and b" " in line else line
        if target.startswith((b"/", b"http:", b"https:", b"*")):
            return 414, "uri_too_long", f"the request line is longer than {limit} bytes"
        return 431, "headers_too_large", f"a header field is longer than {limit} bytes"
    first = message.splitlines()[0][:300] if message.strip() else "bad request"
    if "Too many headers" in first:
        return 431, "headers_too_large", "too many header fields"
    return 400, "bad_request", first


class _GuardedServer(web.Server):
    """web.Server making _GuardedHandler protocols, built from the server aiohttp made for
    the application (its public handler and request factory, wrapped to tell each protocol
    when a head is complete and when its handler is done)."""

    def __init__(self, made: web.Server, *, head_timeout_s: float, **handler_kwargs: Any):
        self.head_timeout_s = head_timeout_s
        self._handler_kwargs = handler_kwargs
        make_request, handle = made.request_factory, made.request_handler

        def request_factory(message, payload, protocol, writer, task):
            if isinstance(protocol, _GuardedHandler):
                protocol.head_received()
            return make_request(message, payload, protocol, writer, task)

        async def request_handler(request: web.BaseRequest) -> web.StreamResponse:
            try:
                return await handle(request)
            finally:
                protocol = request.protocol
                if isinstance(protocol, _GuardedHandler):
                    protocol.request_done()

        super().__init__(request_handler, request_factory=request_factory,
                         handler_cancellation=made.handler_cancellation,
                         loop=asyncio.get_running_loop(), **handler_kwargs)

    def __call__(self) -> web.RequestHandler:
        return _GuardedHandler(self, loop=asyncio.get_running_loop(), **self._handler_kwargs)


class _GuardedRunner(web.AppRunner):
    def __init__(self, app: web.Application, *, head_timeout_s: float,
                 shutdown_timeout: float, **handler_kwargs: Any):
        super().__init__(app, handle_signals=False, shutdown_timeout=shutdown_timeout,
                         **handler_kwargs)
        self._head_timeout_s = head_timeout_s
        self._protocol_kwargs = handler_kwargs

    async def _make_server(self) -> web.Server:
        # aiohttp's own: starts the app (on_startup) and freezes it. The one private hook.
        made = await super()._make_server()
        return _GuardedServer(made, head_timeout_s=self._head_timeout_s,
                              **self._protocol_kwargs)


async def start(settings: Settings, catalog: Catalog, *, reuse_port: bool = False,
                sock: socket.socket | None = None,
                reload_poll_s: float | None = POLL_S) -> web.AppRunner:
    """Start serving in the running loop; returns the runner (call .cleanup() to stop).
    Builds published to settings.data_dir are swapped in as they appear (looked for every
    `reload_poll_s` seconds; 0: only on SIGHUP; None: never)."""
    # The catalog lives as long as the process: move it out of the collector's sight, or
    # every full collection walks hundreds of thousands of objects (~250 ms at 100k stops).
    gc.collect()
    gc.freeze()
    app = create_app(settings, catalog, reload_poll_s=reload_poll_s)
    runner = _GuardedRunner(
        app, head_timeout_s=settings.limits.header_timeout_s,
        shutdown_timeout=SHUTDOWN_GRACE_S, access_log=None,
        keepalive_timeout=settings.limits.keepalive_timeout_s,
        max_line_size=settings.limits.max_line_size,
        max_field_size=settings.limits.max_field_size)
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
            if p.is_alive() and p.pid is not None:  # started, so it has a pid
                os.kill(p.pid, signal.SIGTERM)

    def reload_all(_signum=None, _frame=None):
        for p in procs:
            if p.is_alive() and p.pid is not None:  # started, so it has a pid
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
