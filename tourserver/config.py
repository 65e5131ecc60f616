"""Settings, read once at start-up and passed explicitly (no module-level knobs)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DATA_ENV = "TOURSERVER_DATA"


def default_data_dir() -> Path:
    """Per-user data directory: $TOURSERVER_DATA, else $XDG_DATA_HOME/tourserver."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "tourserver"


MANIFEST_NAMES = ("tour.yaml", "tour.yml", "tour.json")  # as ingest.tours looks for them


def bundled_content_root() -> Path:
    """The source checkout this package runs from: the bundled demo tours (editable installs)."""
    return Path(__file__).resolve().parents[1]


def find_content_root(cwd: Path, bundled: bool = True) -> tuple[Path, str]:
    """The content root (the folder holding tours/ and assets/) to use when none is given,
    and a note saying why when that is not plainly the current folder ("" when it is).

    cwd itself if it holds tours/; X when cwd is inside X/tours/ (a tour folder); the nearest
    folder above with tours/; else the bundled demo tours, said out loud so nobody validates
    the demo while believing they validated their own tour (or, without `bundled`, cwd
    itself: where `tourserver new` starts a content root)."""
    cwd = cwd.resolve()
    if (cwd / "tours").is_dir():
        return cwd, ""
    for folder in (cwd, *cwd.parents):
        if folder.name == "tours" and folder.parent != folder:
            return folder.parent, ""
    for folder in cwd.parents:
        if (folder / "tours").is_dir():
            return folder, (f"note: no tours/ folder here: using the content root {folder} "
                            "above; pass --root DIR to choose another")
    if not bundled:
        return cwd, ""
    demo = bundled_content_root()
    if (demo / "tours").is_dir():
        return demo, (f"note: no tours/ folder here: using the bundled demo tours at "
                      f"{demo}; pass --root DIR for yours")
    return cwd, ("note: no tours/ folder here or above; run from the folder that holds "
                 "tours/ and assets/, or pass --root DIR")


def tour_folder_root(tour_dir: Path) -> tuple[Path, str]:
    """The content root of one tour folder: X for X/tours/<id>/. A folder outside any tours/
    has no content root of its own; its parent is used, with a note."""
    tour_dir = tour_dir.resolve()
    if tour_dir.parent.name == "tours":
        return tour_dir.parent.parent, ""
    return tour_dir.parent, (f"note: {tour_dir} is not inside a tours/ folder: asset paths "
                             f"are read from {tour_dir.parent}; pass --root DIR to choose")


def is_tour_folder(folder: Path) -> bool:
    return any((folder / name).is_file() for name in MANIFEST_NAMES)


def default_content_root() -> Path:
    """The folder holding tours/ and assets/, found from the current directory."""
    return find_content_root(Path.cwd())[0]


def default_node_modules() -> Path:
    """Where `npm ci` put the web app's libraries: beside the source checkout."""
    return Path(__file__).resolve().parents[1] / "node_modules"


def base_url(value: str, what: str, *, trailing_slash: bool = False) -> str:
    """An absolute http(s) URL that links are made from (--public-url, --content-url),
    normalised: no trailing slash, or exactly one with `trailing_slash` (a folder). Raises
    ValueError saying what is wrong: a relative URL, another scheme, a query or a fragment
    would make every link in every document wrong."""
    text = value.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ValueError(f"{what} {value[:200]!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what} must be an absolute http:// or https:// URL with a host, "
                         f"such as https://tours.example.org; got {value[:200]!r}")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError(f"{what} may not have a query or fragment; got {value[:200]!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{what} may not carry a user name or password; got "
                         f"{parts.scheme}://...@{parts.hostname}")
    if any(c.isspace() for c in text):
        raise ValueError(f"{what} may not contain spaces; got {value[:200]!r}")
    text = text.rstrip("/")
    return text + "/" if trailing_slash else text


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
    # Proxies whose X-Forwarded-For names the client (http.client_address); none by default.
    trusted_proxies: tuple = ()
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
    log_format: str | None = None  # "text" | "json"; None: $TOURSERVER_LOG_FORMAT or the TTY
    # Where links in documents point (see base_url); None: relative to this server.
    public_url: str | None = None  # the API as clients reach it: https://tours.example.org
    content_url: str | None = None  # the /c/ files (a CDN): https://cdn.example.org/c/

    def __post_init__(self) -> None:
        if self.log_format not in (None, "text", "json"):
            raise ValueError(f"log format must be text or json, not {self.log_format!r}")
        # Checked here, whoever builds Settings: a bad base would break every link.
        if self.public_url is not None:
            object.__setattr__(self, "public_url", base_url(self.public_url, "--public-url"))
        if self.content_url is not None:
            object.__setattr__(self, "content_url", base_url(
                self.content_url, "--content-url", trailing_slash=True))

    @property
    def content_base(self) -> str:
        """The prefix of content file URLs: --content-url, else <public-url>/c/, else /c/."""
        if self.content_url is not None:
            return self.content_url
        return f"{self.public_url}/c/" if self.public_url is not None else "/c/"

    @property
    def api_base(self) -> str:
        """The prefix of API links (/v1/...): --public-url, else "" (relative)."""
        return self.public_url or ""

    @property
    def tours_dir(self) -> Path:
        return self.content_root / "tours"
