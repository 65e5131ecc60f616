"""Settings, read once at start-up and passed explicitly (no module-level knobs)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DATA_ENV = "TOURSERVER_DATA"


def default_data_dir() -> Path:
    """Per-user data directory: $TOURSERVER_DATA, else $XDG_DATA_HOME/tourserver."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "tourserver"


def default_content_root() -> Path:
    """The folder holding tours/ and assets/: the current directory if it has tours/,
    else the source checkout this package was installed from (editable installs)."""
    cwd = Path.cwd()
    if (cwd / "tours").is_dir():
        return cwd
    return Path(__file__).resolve().parents[1]


def default_node_modules() -> Path:
    """Where `npm ci` put the web app's libraries: beside the source checkout."""
    return Path(__file__).resolve().parents[1] / "node_modules"


@dataclass(frozen=True)
class Limits:
    """Request limits enforced at the HTTP edge."""

    max_request_bytes: int = 64 * 1024  # we accept no uploads yet; bodies are tiny
    max_line_size: int = 8190
    max_field_size: int = 8190
    header_timeout_s: float = 10.0  # a client must finish its request head within this
    keepalive_timeout_s: float = 15.0
    max_cells_per_query: int = 1


@dataclass(frozen=True)
class LiveSettings:
    """The live channel's knobs (tourserver.live.protocol.LiveLimits has the rest)."""

    broker_url: str | None = None  # redis://HOST:PORT/DB; None: one process, SQLite
    allowed_origins: tuple[str, ...] = ()  # besides same-origin and loopback
    tickets_per_minute: int = 60  # per client address
    max_frame_bytes: int = 64 * 1024
    history_window: int = 10_000  # messages a resume may replay before a snapshot instead
    cue_horizon_s: float = 6 * 3600.0
    heartbeat_s: float = 20.0  # ping period; no pong within half of it closes the socket


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=default_data_dir)
    content_root: Path = field(default_factory=default_content_root)
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    limits: Limits = field(default_factory=Limits)
    cors_origin: str = "*"  # public reads are safe to share cross-origin
    access_log: bool = True
    live: LiveSettings = field(default_factory=lambda: LiveSettings())
    node_modules: Path = field(default_factory=default_node_modules)  # the web app's libraries

    @property
    def tours_dir(self) -> Path:
        return self.content_root / "tours"
