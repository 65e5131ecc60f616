"""`tourserver nginx-config`: the nginx configuration for running behind nginx
(docs/deploy.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tourserver.cli import EXIT_OK, EXIT_USAGE, add_common_options


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "nginx-config", help="print an nginx configuration: /c/ from the blob store, the "
                             "rest proxied to tourserver (docs/deploy.md)")
    add_common_options(p, root=False)
    p.add_argument("--upstream", action="append", metavar="HOST:PORT",
                   help="a tourserver node (`serve --host --port`; repeat for each node; "
                        "unix:/path for a socket; default 127.0.0.1:8080)")
    p.add_argument("--server-name", action="append", metavar="NAME",
                   help="host name nginx answers for (repeat; default: the --public-url "
                        "host, else any)")
    p.add_argument("--listen", default="", metavar="[ADDR:]PORT",
                   help="where nginx listens (default: the --public-url port for http://, "
                        "else 80)")
    p.add_argument("--public-url", metavar="URL",
                   help="the address tourists use, as given to `serve --public-url`")
    p.add_argument("--log-dir", type=Path, default=Path("/var/log/nginx"), metavar="DIR",
                   help="where nginx writes tourserver.access.log and tourserver.error.log")
    p.set_defaults(func=cmd_nginx_config)


def cmd_nginx_config(args: argparse.Namespace) -> int:
    from tourserver.http.nginx import NginxOptions, nginx_config

    data = Path(args.data).expanduser().resolve()  # nginx has another working directory
    try:
        options = NginxOptions(
            data_dir=data, upstreams=tuple(args.upstream or ("127.0.0.1:8080",)),
            server_names=tuple(args.server_name or ()), listen=args.listen,
            public_url=args.public_url, log_dir=Path(args.log_dir).expanduser().absolute())
    except ValueError as exc:
        print(f"usage error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not (data / "current").is_file():
        # Not an error: the configuration is often written before the first build.
        print(f"note: nothing is published in {data} yet (run `tourserver build --data "
              f"{data}`); nginx will answer 404 for content until it is", file=sys.stderr)
    sys.stdout.write(nginx_config(options))
    return EXIT_OK
