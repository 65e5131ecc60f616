"""Logging on stderr: readable lines on a terminal, JSON lines otherwise (for a collector).

Records carry no client address, location, query string or raw path: the access log names
the route template (/v1/cells/{cell}). Both formats print the same fields. As a safety net
for text we do not write ourselves (a parser's complaint quoting a request line, an
exception message), both formats also blank what looks like an H3 cell, a query string or
a precise coordinate in any text they print.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import re
import sys
import time
from typing import TextIO

import orjson

LOG_FORMAT_ENV = "TOURSERVER_LOG_FORMAT"
LOG_FORMATS = ("text", "json")

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


# An H3 cell id (15 hex digits, mode 1 starts with 8); a query (`?name=...`, up to a space,
# quote or backslash, so JSON escapes stay whole); a decimal degree to 4 places or more.
# One pattern, one scan: the access log runs this on every request.
_SENSITIVE = re.compile(r"(?P<query>\?[\w.%~+-]*=[^\s'\"\\]*)"
                        r"|(?P<cell>\b8[0-9a-fA-F]{14}\b)"
                        r"|(?P<coord>(?<![\w.])-?\d{1,3}\.\d{4,}(?![\w.]))")
_BLANKS = {"query": "?{query}", "cell": "{cell}", "coord": "{coord}"}


@functools.lru_cache(maxsize=1024)  # the access log repeats the same few route templates
def redact(text: str) -> str:
    """`text` with anything shaped like a cell id, a query or a coordinate blanked."""
    return _SENSITIVE.sub(lambda m: _BLANKS[m.lastgroup or "cell"], text)


def _redacted(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return value


def _extras(record: logging.LogRecord) -> dict[str, object]:
    """What the caller passed in `extra=`, redacted."""
    return {k: _redacted(v) for k, v in vars(record).items()
            if k not in _RESERVED and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        # orjson, compact: the same bytes the access log's fast path writes (AccessLog)
        return orjson.dumps(entry, default=str).decode()


_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
           logging.ERROR: "error", logging.CRITICAL: "crit"}
_LEVEL_COLOURS = {"debug": "2", "warn": "33", "error": "31", "crit": "1;31"}
# C0 controls and DEL, newline aside: escaped, so a value can neither forge a log line
# nor send escape sequences to the operator's terminal.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
_BARE = re.compile(r"^[^\s=\"]+$")


def _clean(text: str) -> str:
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text.replace("\n", "\n    ")  # continuation lines stay visibly part of this one


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _pairs(prefix: str, value: object) -> list[str]:
    """key=value, nested dicts flattened to key.sub=value; values quoted only if needed."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _pairs(f"{prefix}.{k}", v)]
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           default=str)
    return [f"{prefix}={text if _BARE.match(text) else json.dumps(text, ensure_ascii=False)}"]


class TextFormatter(logging.Formatter):
    """`12:03:04 info  access GET /v1/tours/{tour_id} 200 1.2 ms 3.4 KB`: local time,
    level, the logger's last name, the message, then the extras as key=value."""

    def __init__(self, colour: bool = False):
        super().__init__()
        self.colour = colour

    def _paint(self, code: str | None, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour and code else text

    def format(self, record: logging.LogRecord) -> str:
        level = _LEVELS.get(record.levelno, record.levelname.lower())
        extras = _extras(record)
        message = _clean(redact(record.getMessage()))
        http = extras.get("http")
        if isinstance(http, dict) and {"method", "route", "status"} <= http.keys():
            del extras["http"]
            status = int(http["status"])
            message = " ".join([
                _clean(str(http["method"])), _clean(str(http["route"])),
                self._paint({2: "32", 3: "36", 4: "33"}.get(status // 100, "31"), str(status)),
                f"{float(http.get('ms', 0)):.1f} ms", _size(float(http.get("bytes", 0)))])
        parts = [time.strftime("%H:%M:%S", time.localtime(record.created)),
                 self._paint(_LEVEL_COLOURS.get(level), f"{level:<5}"),
                 self._paint("2", _clean(record.name.rsplit(".", 1)[-1])), message]
        parts += [_clean(p) for k, v in extras.items() for p in _pairs(k, v)]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n    " + _clean(redact(self.formatException(record.exc_info)))
        return line


def resolve_log_format(fmt: str | None = None, stream: TextIO | None = None) -> str:
    """`fmt` if given, else $TOURSERVER_LOG_FORMAT, else text on a terminal and JSON
    otherwise. Raises ValueError naming the choices for anything else."""
    chosen = fmt or os.environ.get(LOG_FORMAT_ENV) or None
    if chosen is None:
        stream = stream if stream is not None else sys.stderr
        return "text" if _isatty(stream) else "json"
    if chosen not in LOG_FORMATS:
        source = "--log-format" if fmt else LOG_FORMAT_ENV
        raise ValueError(f"{source} must be text or json, not {chosen[:40]!r}")
    return chosen


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def make_formatter(fmt: str, stream: TextIO) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    # Colour only for a person at a terminal who has not asked for none (no-color.org).
    return TextFormatter(colour=_isatty(stream) and not os.environ.get("NO_COLOR"))


def setup_logging(fmt: str | None = None, *, level: int = logging.INFO,
                  stream: TextIO | None = None) -> str:
    """Send every log record to `stream` (stderr) in `fmt` (see resolve_log_format); the
    format chosen is returned. Spawned workers calling it with no argument agree with the
    process that started them through $TOURSERVER_LOG_FORMAT or the shared stderr."""
    stream = stream if stream is not None else sys.stderr
    fmt = resolve_log_format(fmt, stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter(fmt, stream))
    handler.tourserver_batched = True  # type: ignore[attr-defined]  # see AccessLog
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's own access logger would print the raw path and client address: keep it off.
    logging.getLogger("aiohttp.access").disabled = True
    # libvips reports every thread pool it finishes at INFO: noise for an operator.
    logging.getLogger("pyvips").setLevel(logging.WARNING)
    return fmt


class AccessLog:
    """The access log, one record per request, written once per event-loop turn.

    Going through `logging` per request (a record, the logger tree, the handler's lock, a
    write and a flush) cost a third of a cell query's CPU at 32 concurrent connections.
    When the handler is the one `setup_logging` installed, the records of one loop turn
    are formatted by its formatter and written in one write; otherwise (tests capturing
    logs, a custom setup) every record goes through `logging` as usual."""

    def __init__(self, name: str = "tourserver.access"):
        self.logger = logging.getLogger(name)
        self._lines: list[str] = []
        self._handler: logging.StreamHandler | None = None
        self._second, self._stamp = -1, ""

    def request(self, fields: dict) -> None:
        """Log one request: `fields` (method, route template, status, ms, bytes) go under
        the record's "http" key, as `logger.info("request", extra={"http": fields})`."""
        if not self.logger.isEnabledFor(logging.INFO):
            return
        handler = _batched_handler()
        if handler is None or self.logger.handlers or not self.logger.propagate:
            self.logger.info("request", extra={"http": fields})
            return
        line = self._format(handler, fields)
        if not self._lines:
            self._handler = handler
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop: write now
                self._lines.append(line)
                self.flush()
                return
        self._lines.append(line)

    def _format(self, handler: logging.Handler, fields: dict) -> str:
        if isinstance(handler.formatter, JsonFormatter):
            # JsonFormatter's line, made directly: route templates and numbers only, so
            # there is nothing to redact, and orjson is ~10x json.dumps here.
            now = time.time()
            second = int(now)
            if second != self._second:
                self._second = second
                self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            entry = {"ts": f"{self._stamp}.{int((now - second) * 1000):03d}Z",
                     "level": "info", "logger": self.logger.name, "msg": "request",
                     "http": fields}
            return orjson.dumps(entry).decode() + "\n"
        record = self.logger.makeRecord(self.logger.name, logging.INFO, __file__, 0,
                                        "request", (), None, extra={"http": fields})
        return handler.format(record) + "\n"

    def flush(self) -> None:
        lines, self._lines = self._lines, []
        handler = self._handler
        if not lines or handler is None:
            return
        try:
            handler.stream.write("".join(lines))
            handler.flush()
        except (OSError, ValueError):  # stderr closed under us: nothing better to do
            pass


def _batched_handler() -> logging.StreamHandler | None:
    handlers = logging.getLogger().handlers
    if len(handlers) == 1 and getattr(handlers[0], "tourserver_batched", False):
        return handlers[0]  # type: ignore[return-value]
    return None
