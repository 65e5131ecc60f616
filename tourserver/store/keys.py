"""API keys for event hosts and content creators, kept in `<data>/keys.json`.

A key is `tsk_<id>_<secret>`: a short public id (shown by `keys list`, used by `keys revoke`)
and 256 random bits, URL-safe so it fits an `Authorization: Bearer` header. Only its SHA-256
is stored, with the id, role, name and creation time; the plaintext exists once, when
`create` returns it. Revoking removes the record.

Writes are read-modify-write under an exclusive lock on `keys.lock` and atomic (`keys.json`
is replaced whole, mode 0600), so concurrent `keys create` lose nothing and readers never
see half a file. `verify` re-reads the file whenever it changed, so a running server honours
a new or revoked key at once. Nothing here logs a key.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tourserver.errors import TourError
from tourserver.files import atomic_write

ROLES = ("host", "creator")
SCHEMA = "tourserver.keys/1"
PREFIX = "tsk_"
MAX_KEY_CHARS = 200
MAX_NAME_CHARS = 200
# tsk_ + 12 hex id + _ + token_urlsafe(32) (43 chars of [A-Za-z0-9_-]).
_KEY_RE = re.compile(r"tsk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
_ID_RE = re.compile(r"[0-9a-f]{12}")
_HASH_RE = re.compile(r"[0-9a-f]{64}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class KeysInvalid(TourError):
    """keys.json cannot be read: a server misconfiguration, not the client's fault."""

    status = 500
    code = "keys_invalid"


@dataclass(frozen=True)
class ApiKey:
    """What is stored about a key: never the key itself."""

    id: str
    role: str
    name: str
    created_at: str  # RFC 3339 UTC, e.g. 2026-12-04T21:00:00Z

    def to_json(self) -> dict:
        return {"id": self.id, "role": self.role, "name": self.name,
                "created_at": self.created_at}


def _hash(key: str) -> str:
    # Keys carry 256 random bits, so a plain, fast SHA-256 is the right hash: there is
    # nothing to brute-force, and a slow password hash would only cost every request.
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def _well_formed(key: object) -> bool:
    return (isinstance(key, str) and len(key) <= MAX_KEY_CHARS and key.isascii()
            and _KEY_RE.fullmatch(key) is not None)


class KeyStore:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / "keys.json"
        self.lock_path = self.data_dir / "keys.lock"
        # (st_mtime_ns, st_size, st_ino) of the file last parsed, and its records by hash;
        # one tuple, replaced whole, so a reader never sees a signature with other records.
        self._cache: tuple[tuple[int, int, int] | None, dict[str, ApiKey]] = (None, {})

    # -- reading -------------------------------------------------------------------------

    def _parse(self, raw: bytes) -> dict[str, ApiKey]:
        """The records of a keys.json body by hash; KeysInvalid naming the file if it is bad."""
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise KeysInvalid(f"{self.path}: not valid JSON: {exc}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise KeysInvalid(f"{self.path}: expected an object with a \"keys\" list")
        records: dict[str, ApiKey] = {}
        for i, item in enumerate(doc["keys"]):
            fields = ("id", "role", "name", "created_at", "sha256")
            if (not isinstance(item, dict)
                    or not all(isinstance(item.get(f), str) for f in fields)
                    or item["role"] not in ROLES or not _ID_RE.fullmatch(item["id"])
                    or not _HASH_RE.fullmatch(item["sha256"])):
                raise KeysInvalid(f"{self.path}: /keys/{i} is not a valid key record "
                                  "(id, role, name, created_at, sha256)")
            records[item["sha256"]] = ApiKey(item["id"], item["role"], item["name"],
                                             item["created_at"])
        return records

    def _read(self) -> dict[str, ApiKey]:
        """The file as it is now (no cache); empty if there is none."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        return self._parse(raw)

    def _current(self) -> dict[str, ApiKey]:
        """The records, re-read only when keys.json changed: one stat when it did not."""
        sig, records = self._cache
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._cache = (None, {})
            return {}
        if sig == (st.st_mtime_ns, st.st_size, st.st_ino):
            return records
        try:
            with open(self.path, "rb") as f:
                # The signature of what is read, not of what was stat'ed: if the file was
                # replaced in between, the next call sees the change and reads again.
                st = os.fstat(f.fileno())
                raw = f.read()
        except FileNotFoundError:
            self._cache = (None, {})
            return {}
        records = self._parse(raw)
        self._cache = ((st.st_mtime_ns, st.st_size, st.st_ino), records)
        return records

    def list(self) -> list[ApiKey]:
        """Every key, oldest first (the file keeps them in the order they were made)."""
        return [*self._current().values()]

    def verify(self, key: str) -> ApiKey | None:
        """The record of a valid, unrevoked key, else None. Never raises for a bad key string
        (a corrupt keys.json raises KeysInvalid: fail closed, and loudly). It stats keys.json
        (and re-reads it when it changed): a server calls it off the event loop. Safe from
        several threads: the cache is one tuple, replaced whole."""
        if not _well_formed(key):
            return None
        # A dict lookup by the SHA-256 of the key is safe: any timing it leaks is about a
        # hash of a 256-bit secret, which tells an attacker nothing about any real key.
        return self._current().get(_hash(key))

    # -- writing -------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _write(self, records: dict[str, ApiKey]) -> None:
        items = [{**k.to_json(), "sha256": h} for h, k in records.items()]
        body = json.dumps({"schema": SCHEMA, "keys": items}, ensure_ascii=False, indent=1)
        atomic_write(self.path, body.encode() + b"\n", private=True)  # keys: owner only

    def create(self, role: str, name: str = "") -> tuple[ApiKey, str]:
        """A new key: its record and the plaintext key, which is never stored or shown again."""
        if role not in ROLES:
            raise TourError(f"role must be one of {', '.join(ROLES)}", code="invalid_role",
                            field="role")
        if not isinstance(name, str) or len(name) > MAX_NAME_CHARS or _CONTROL_RE.search(name):
            raise TourError(f"name must be at most {MAX_NAME_CHARS} characters, without "
                            "control characters", code="invalid_name", field="name")
        created_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with self._locked():
            records = self._read()
            taken = {k.id for k in records.values()}
            key_id = secrets.token_hex(6)
            while key_id in taken:
                key_id = secrets.token_hex(6)
            key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
            record = ApiKey(key_id, role, name, created_at)
            records[_hash(key)] = record
            self._write(records)
        return record, key

    def revoke(self, key_id: str) -> bool:
        """Remove the key with this id; False if there is none."""
        if not self.data_dir.is_dir():
            return False
        with self._locked():
            records = self._read()
            kept = {h: k for h, k in records.items() if k.id != key_id}
            if len(kept) == len(records):
                return False
            self._write(kept)
        return True
