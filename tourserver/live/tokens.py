"""Signed, expiring, URL-safe tokens for the live channel: attendee and viewer tickets, host
tokens. HMAC-SHA256 with a server secret, so any process holding the secret can check a
token without a lookup (several servers share it through TOURSERVER_SECRET).

Token: base64url(payload JSON) "." base64url(HMAC-SHA256(secret, payload)).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import orjson

SECRET_ENV = "TOURSERVER_SECRET"
SECRET_FILE = "live-secret"
MAX_TOKEN_CHARS = 1024


class TokenInvalid(Exception):
    """A token that is malformed, forged, for another event or expired (`expired` says)."""

    def __init__(self, message: str, expired: bool = False):
        super().__init__(message)
        self.message = message
        self.expired = expired


@dataclass(frozen=True)
class Claims:
    event: str
    role: str  # host | attendee | viewer
    subject: str  # who: a random id per ticket, kept across reconnects
    expires_ms: float
    name: str = ""


def load_secret(data_dir: Path) -> bytes:
    """TOURSERVER_SECRET if set, else the data directory's secret, made (mode 0600) on first
    use. Workers starting together agree on one secret, read whole: it is written to a
    temporary file first and published by a hard link, which fails where another process
    published first (then theirs is read)."""
    env = os.environ.get(SECRET_ENV)
    if env:
        if len(env) < 16:
            raise ValueError(f"{SECRET_ENV} is shorter than 16 characters")
        return env.encode()
    path = data_dir / SECRET_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".tmp-secret-")  # mode 0600
        try:
            value = secrets.token_urlsafe(48).encode()
            with os.fdopen(fd, "wb") as f:
                f.write(value)
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, path)
            return value
        except FileExistsError:
            pass  # another worker published its secret first
        finally:
            os.unlink(tmp)
    value = path.read_bytes().strip()
    if len(value) < 32:
        raise ValueError(f"{path} holds no usable secret; delete it to make a new one")
    return value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    def __init__(self, secret: bytes):
        self._key = hashlib.sha256(b"tourserver live token v1\0" + secret).digest()

    def sign(self, claims: Claims) -> str:
        payload = orjson.dumps({"e": claims.event, "r": claims.role, "s": claims.subject,
                                "x": round(claims.expires_ms), "n": claims.name})
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(mac)}"

    def verify(self, token: str, event: str, now_ms: float) -> Claims:
        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            raise TokenInvalid("the ticket is malformed")
        body, _, mac = token.partition(".")
        try:
            payload, given = _unb64(body), _unb64(mac)
        except (ValueError, UnicodeEncodeError):
            raise TokenInvalid("the ticket is malformed") from None
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, given):
            raise TokenInvalid("the ticket's signature does not match")
        data = orjson.loads(payload)
        claims = Claims(event=data["e"], role=data["r"], subject=data["s"],
                        expires_ms=float(data["x"]), name=data.get("n", ""))
        if claims.event != event:
            raise TokenInvalid("the ticket is for another event")
        if claims.expires_ms <= now_ms:
            raise TokenInvalid("the ticket has expired", expired=True)
        return claims
