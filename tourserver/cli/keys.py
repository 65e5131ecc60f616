"""`tourserver keys create | list | revoke`: API keys for event hosts and creators."""

from __future__ import annotations

import argparse
import json
import sys

from tourserver.cli import EXIT_INVALID, EXIT_OK, add_common_options


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("keys", help="API keys for event hosts and content creators")
    keys = p.add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser("create", help="make a key and print it, once")
    add_common_options(p, root=False)
    p.add_argument("--role", required=True, choices=("host", "creator"))  # store.keys.ROLES
    p.add_argument("--name", default="", help="a label for the key, e.g. who holds it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_keys_create)
    p = keys.add_parser("list", help="every key's id, role, name and creation time")
    add_common_options(p, root=False)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_keys_list)
    p = keys.add_parser("revoke", help="remove a key; it stops working at once")
    add_common_options(p, root=False)
    p.add_argument("id", help="the key's id, as `keys list` shows it")
    p.set_defaults(func=cmd_keys_revoke)


def cmd_keys_create(args: argparse.Namespace) -> int:
    from tourserver.store.keys import KeyStore

    record, key = KeyStore(args.data).create(args.role, args.name)
    print(json.dumps({**record.to_json(), "key": key}, ensure_ascii=False) if args.json
          else key)
    print(f"note: key {record.id} ({record.role}) will not be shown again; store it now",
          file=sys.stderr)
    return EXIT_OK


def cmd_keys_list(args: argparse.Namespace) -> int:
    from tourserver.render import table
    from tourserver.store.keys import KeyStore

    keys = KeyStore(args.data).list()
    if args.json:
        print(json.dumps([k.to_json() for k in keys], ensure_ascii=False))
    elif keys:
        print(table([[k.id, k.role, k.name, k.created_at] for k in keys],
                    ["id", "role", "name", "created"]))
    else:
        print(f"no keys in {args.data}")
    return EXIT_OK


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from tourserver.store.keys import KeyStore

    if not KeyStore(args.data).revoke(args.id):
        print(f"error: no key with id {args.id}", file=sys.stderr)
        return EXIT_INVALID
    print(f"revoked key {args.id}")
    return EXIT_OK
