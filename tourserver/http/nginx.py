"""The nginx configuration `tourserver nginx-config` prints: a pure function of options.

nginx serves /c/ straight from the blob store with the headers tourserver itself sends
(http/content.py, http/middleware.py) and proxies everything else (API, web app, the live
socket) to the tourserver workers. tests/e2e/test_nginx.py runs the result in a real
nginx in front of a real `tourserver serve` and compares the two, header by header.

The text goes inside nginx's http {} block (Debian's /etc/nginx/conf.d/ is included
there): an upstream, two maps, a log format and one server block, all named tourserver_*.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tourserver import __version__
from tourserver.config import Limits, base_url
from tourserver.http.content import IMMUTABLE
from tourserver.store.blobs import MIME_TYPES

# The headers tourserver's middleware puts on every response (http/middleware.py): the e2e
# test compares nginx's with a running server's, so the two cannot drift apart unnoticed.
CORS_EXPOSE = ("ETag, Content-Range, Accept-Ranges, Content-Length, Content-Encoding, "
               "Location, Retry-After, Vary, X-Tourserver-Tier")
SECURITY_HEADERS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"))

# Every route tourserver serves (http/app.py), as its access log names them: nginx logs the
# template too, never the path (a cell id is a location) or the query (tickets).
ROUTES = (
    "/", "/host", "/app/{name}", "/sw.js", "/vendor/{spec}/{path}",
    "/v1/health", "/metrics", "/v1/openapi.yaml", "/v1/schema/tour.json",
    "/v1/tours", "/v1/tours/{tour_id}", "/v1/tours/{tour_id}/tileset.json",
    "/v1/tours/{tour_id}/pack", "/v1/anchors/{anchor_id}", "/v1/anchors/{anchor_id}/geopose",
    "/v1/scenes/{scene_id}", "/v1/scenes/{scene_id}/glb", "/v1/cells/{cell}", "/c/{name}",
    "/v1/events", "/v1/events/{event_id}", "/v1/events/{event_id}/tickets",
    "/v1/events/{event_id}/end", "/v1/events/{event_id}/log", "/v1/events/{event_id}/live",
)
MULTI_SEGMENT = {"path"}  # /vendor/{spec}/{path:.+}

# Errors nginx itself answers (not tourserver): JSON like tourserver's own.
NGINX_ERRORS = {
    413: ("request_too_large", "the request body is larger than this server accepts"),
    502: ("upstream_unavailable", "the tour server is not answering; try again shortly"),
    504: ("upstream_timeout", "the tour server did not answer in time; try again shortly"),
}

_UNSAFE = re.compile(r"[\s\"'\\;{}$#]")  # would end or change an nginx token
_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)$")
_SERVER_NAME = re.compile(r"^(?:_|\*?[A-Za-z0-9.-]+\*?)$")  # exact or wildcard names


@dataclass(frozen=True)
class NginxOptions:
    """What the configuration depends on. Every value is checked (ValueError saying what is
    wrong), as it is pasted into a file whose syntax a stray ';' or '$' would change."""

    data_dir: Path  # tourserver's data directory: nginx reads <data>/blobs
    upstreams: tuple[str, ...] = ("127.0.0.1:8080",)  # HOST:PORT or unix:/path, one a node
    server_names: tuple[str, ...] = ()  # default: the --public-url host, else "_" (any)
    listen: str = ""  # [ADDR:]PORT; default: the --public-url port if http, else 80
    public_url: str | None = None  # where tourists reach it, as given to `serve --public-url`
    log_dir: Path = Path("/var/log/nginx")
    max_body_bytes: int = Limits.max_request_bytes  # tourserver refuses more (413)
    cors_origin: str = "*"  # Settings.cors_origin
    keepalive: int = 32  # idle connections kept open to each worker node

    def __post_init__(self) -> None:
        for path, what in ((self.data_dir, "the data directory"), (self.log_dir, "--log-dir")):
            if not path.is_absolute() or _UNSAFE.search(str(path)):
                raise ValueError(f"{what} must be an absolute path without spaces, quotes, "
                                 f"';', '{{', '}}', '#' or '$'; got {str(path)[:200]!r}")
        if not self.upstreams:
            raise ValueError("give at least one --upstream HOST:PORT")
        for upstream in self.upstreams:
            check_upstream(upstream)
        if self.public_url is not None:
            url = base_url(self.public_url, "--public-url")
            if urlsplit(url).path not in ("", "/"):
                raise ValueError("nginx-config serves tourserver at the root of its host; "
                                 f"--public-url {url!r} has a path")
            object.__setattr__(self, "public_url", url)
        for name in self.server_names:
            if not _SERVER_NAME.match(name) or _UNSAFE.search(name):
                raise ValueError(f"--server-name {name[:100]!r} is not a host name")
        if self.listen:
            check_listen(self.listen)
        if self.max_body_bytes < 1 or self.keepalive < 1:
            raise ValueError("max_body_bytes and keepalive must be positive")
        if _UNSAFE.search(self.cors_origin):
            raise ValueError(f"CORS origin {self.cors_origin[:100]!r} is not an origin")

    @property
    def blobs(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def names(self) -> tuple[str, ...]:
        if self.server_names:
            return self.server_names
        if self.public_url is not None:
            return (urlsplit(self.public_url).hostname or "_",)
        return ("_",)

    @property
    def listen_on(self) -> str:
        if self.listen:
            return self.listen
        if self.public_url is not None:
            parts = urlsplit(self.public_url)
            if parts.scheme == "http" and parts.port:
                return str(parts.port)
        return "80"


def check_upstream(value: str) -> None:
    """HOST:PORT ([v6]:PORT) or unix:/absolute/path; ValueError otherwise."""
    if value.startswith("unix:"):
        path = value[5:]
        if path.startswith("/") and not _UNSAFE.search(path):
            return
        raise ValueError(f"--upstream {value[:100]!r}: a socket is unix:/absolute/path")
    host, sep, port = value.rpartition(":")
    if not sep or not _HOST.match(host) or not _port_ok(port):
        raise ValueError(f"--upstream {value[:100]!r} is not HOST:PORT (e.g. 10.0.0.5:8080)")


def check_listen(value: str) -> None:
    """PORT or ADDR:PORT; ValueError otherwise."""
    host, sep, port = value.rpartition(":")
    if not _port_ok(port) or (sep and not _HOST.match(host)):
        raise ValueError(f"--listen {value[:100]!r} is not PORT or ADDR:PORT")


def _port_ok(text: str) -> bool:
    return text.isdigit() and 1 <= int(text) <= 65535


def _q(text: str) -> str:
    """An nginx double-quoted string ($name stays a variable)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _json_error(code: str, message: str, field: str | None = None) -> str:
    """tourserver's error body (http/responses.error_body), keys in its order."""
    field_part = f'"field":"{field}",' if field else ""
    return f'{{"error":{{"code":"{code}",{field_part}"message":"{message}"}}}}'


# tourserver's own words for a missing blob (store/catalog.py), and nginx's for a range
# outside the file (tourserver's names the range, which nginx cannot)
NO_CONTENT = _json_error("not_found", "no content '$tourserver_name'", "name")
NOT_SATISFIABLE = _json_error("range_not_satisfiable",
                              "no range of the Range header is inside the file", "Range")


def _route_regex(template: str) -> str:
    def part(m: re.Match) -> str:
        return ".+" if m.group(1) in MULTI_SEGMENT else "[^/]+"

    return "^" + re.sub(r"\{(\w+)\}", part, re.escape(template).replace(r"\{", "{")
                        .replace(r"\}", "}")) + "$"


def _route_map() -> list[str]:
    lines = ["# The route template for the access log: never the path or the query.",
             "map $uri $tourserver_route {", '    default "unmatched";']
    for route in ROUTES:
        key = _q("~" + _route_regex(route)) if "{" in route else _q(route)
        lines.append(f"    {key} {_q(route)};")
    return [*lines, "}"]


def _headers(pairs: list[tuple[str, str]], indent: str, always: bool = True) -> list[str]:
    # `always`: on every status, like tourserver's middleware.
    return [f"{indent}add_header {name} {_q(value)}{' always' if always else ''};"
            for name, value in pairs]


def _public_headers(o: NginxOptions) -> list[tuple[str, str]]:
    return [("Access-Control-Allow-Origin", o.cors_origin),
            ("Access-Control-Expose-Headers", CORS_EXPOSE), *SECURITY_HEADERS]


def _proxy(indent: str, *, upgrade: bool = False) -> list[str]:
    """proxy_pass to the workers. Every location that proxies restates these (nginx drops
    the inherited proxy_set_header list as soon as a location sets one)."""
    i = indent
    return [
        f"{i}proxy_pass http://tourserver;",
        f"{i}proxy_http_version 1.1;",
        # Host as the client sent it (port included): the live socket's same-origin check
        # compares it with the page's Origin.
        f"{i}proxy_set_header Host $http_host;",
        # tourserver never logs these; see docs/deploy.md on the ticket rate limit.
        f"{i}proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        f"{i}proxy_set_header X-Forwarded-Proto $scheme;",
        # keepalive to the upstream needs an empty Connection; the socket needs "upgrade".
        *([f"{i}proxy_set_header Upgrade $http_upgrade;"] if upgrade else []),
        f"{i}proxy_set_header Connection "
        + ("$tourserver_connection;" if upgrade else '"";'),
        f"{i}proxy_connect_timeout 5s;",
    ]


def _error_locations(o: NginxOptions) -> list[str]:
    lines = []
    for status, (code, message) in NGINX_ERRORS.items():
        lines += [f"    location @tourserver_{status} {{",
                  '        default_type "application/json; charset=utf-8";',
                  *_headers([("Cache-Control", "no-store"), *_public_headers(o)], " " * 8),
                  f"        return {status} {_q(_json_error(code, message))};",
                  "    }"]
    return lines


def nginx_config(o: NginxOptions) -> str:
    """The configuration text for `o`; it goes inside nginx's http {} block."""
    types = " ".join(f"{MIME_TYPES[e].split(';')[0]} {e};" for e in sorted(MIME_TYPES))
    # text/vtt goes out as "text/vtt; charset=utf-8", as tourserver sends it
    with_charset = sorted({m.split(";")[0] for m in MIME_TYPES.values() if "charset=" in m})
    name_re = ("^/c/(?<tourserver_name>(?<tourserver_sha>(?<tourserver_fan>[0-9a-f]{2})"
               "[0-9a-f]{62})\\.[a-z0-9]{2,4})$")
    content_headers = [("ETag", '"$tourserver_sha"'), ("Cache-Control", IMMUTABLE),
                       *_public_headers(o)]
    error_pages = " ".join(f"error_page {s} @tourserver_{s};" for s in NGINX_ERRORS)
    serve_cmd = "tourserver serve" + (f" --public-url {o.public_url}" if o.public_url else "")
    lines = [
        f"# Generated by `tourserver nginx-config` (tourserver {__version__}).",
        "# Put it inside nginx's http {} block (e.g. /etc/nginx/conf.d/tourserver.conf),",
        f"# with each node running `{serve_cmd} --data {o.data_dir}`.",
        "# nginx serves /c/ from the blob store; everything else goes to tourserver.",
        "",
        "upstream tourserver {",
        *(f"    server {u};" for u in o.upstreams),
        f"    keepalive {o.keepalive};",
        # Below tourserver's own keep-alive (Limits.keepalive_timeout_s), so nginx never
        # reuses a connection the server is closing.
        "    keepalive_timeout 10s;",
        "}",
        "",
        "map $http_upgrade $tourserver_connection {",
        "    default upgrade;",
        "    \"\" \"\";",
        "}",
        "",
        *_route_map(),
        "",
        "# No client address, path or query: the same rule as tourserver's own log.",
        "log_format tourserver escape=json '{\"time\":\"$time_iso8601\",'",
        "    '\"method\":\"$request_method\",\"route\":\"$tourserver_route\",'",
        "    '\"status\":$status,\"bytes\":$body_bytes_sent,\"s\":$request_time,'",
        "    '\"upstream_s\":\"$upstream_response_time\"}';",
        "",
        "server {",
        f"    listen {o.listen_on};",
        f"    server_name {' '.join(o.names)};",
        "    server_tokens off;",
    ]
    if o.public_url and o.public_url.startswith("https:"):
        lines += ["    # Tourists use https: end TLS at a load balancer or CDN in front, or here:",
                  "    #   listen 443 ssl http2;",
                  f"    #   ssl_certificate /etc/letsencrypt/live/{o.names[0]}/fullchain.pem;",
                  f"    #   ssl_certificate_key /etc/letsencrypt/live/{o.names[0]}/privkey.pem;"]
    lines += [
        f"    access_log {o.log_dir}/tourserver.access.log tourserver;",
        "    # nginx adds the client address and request line to every error-log line: only",
        "    # critical ones are kept (tourserver's log and /metrics tell the rest).",
        f"    error_log {o.log_dir}/tourserver.error.log crit;",
        "    log_not_found off;",
        f"    client_max_body_size {o.max_body_bytes};  # tourserver's own limit",
        "    gzip on;",
        "    gzip_proxied any;",
        "    gzip_min_length 1024;",
        "    gzip_types application/json application/geo+json application/geopose+json",
        "               application/schema+json application/x-ndjson application/yaml",
        "               text/css text/javascript application/javascript image/svg+xml;",
        f"    {error_pages}",
        "",
        "    # /c/<sha256>.<ext>: immutable, content-addressed, straight from the blob store.",
        f"    location ~ {_q(name_re)} {{",
        f"        alias {o.blobs}/$tourserver_fan/$tourserver_name;",
        f"        types {{ {types} }}",
        "        default_type application/octet-stream;",
        "        charset utf-8;",
        f"        charset_types {' '.join(with_charset)};",
        "        gzip off;  # the bytes, their hash and ranges stay as they are",
        "        sendfile on;",
        "        tcp_nopush on;",
        # Blobs never change: an open descriptor stays right; misses are not cached, so a
        # newly published blob is served at once.
        "        open_file_cache max=10000 inactive=60s;",
        "        etag off;  # nginx's is mtime-based; ours is the hash",
        "        if_modified_since off;",
        '        add_header Last-Modified "";  # as tourserver: the hash is the validator',
        # Not `always`: these are added before nginx finds a range unsatisfiable, and its
        # 416 keeps them (with `always` they would be sent twice).
        *_headers(content_headers, " " * 8, always=False),
        # tourserver answers conditional requests and CORS preflights (405 here): nginx's
        # `return 304` would send Content-Length: 0, which RFC 9110 §8.6 forbids. Files
        # marked immutable rarely see either.
        "        error_page 404 @tourserver_no_content;",
        "        error_page 416 @tourserver_416;",
        "        error_page 405 418 = @tourserver_app;",
        "        if ($http_if_none_match) {",
        "            return 418;",
        "        }",
        "    }",
        "    location /c/ {  # not <sha256>.<ext>: tourserver says why",
        *_proxy(" " * 8),
        "    }",
        "    location @tourserver_no_content {",
        '        default_type "application/json; charset=utf-8";',
        *_headers([("Cache-Control", "no-store"), *_public_headers(o)], " " * 8),
        f"        return 404 {_q(NO_CONTENT)};",
        "    }",
        "    location @tourserver_416 {  # nginx's Content-Range stays; a JSON body for its HTML",
        '        default_type "application/json; charset=utf-8";',
        f"        return 416 {_q(NOT_SATISFIABLE)};",
        "    }",
        "",
        "    # The live socket: upgraded, and idle for as long as a show lasts (tourserver",
        "    # pings every 20 s; the timeout only ends sockets nobody answers).",
        "    location ~ \"^/v1/events/[^/]+/live$\" {",
        *_proxy(" " * 8, upgrade=True),
        "        proxy_read_timeout 1h;",
        "        proxy_send_timeout 1h;",
        "        proxy_buffering off;",
        "    }",
        "",
        "    # The API and the web app. Client hints (Save-Data, ECT, Device-Memory) pass as",
        "    # sent, and Vary / Accept-CH come back as tourserver wrote them.",
        "    location / {",
        *_proxy(" " * 8),
        "    }",
        "    location @tourserver_app {",
        *_proxy(" " * 8),
        "    }",
        *_error_locations(o),
        "}",
        "",
    ]
    return "\n".join(lines)
