"""Errors with stable codes. Every layer raises these; the HTTP and CLI edges render them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
    """One problem found in an input: a stable code, where it is, why, and how to fix it.

    `field` is a JSON-pointer-like path (/stops/2/anchor/lat) for tools; `stop` names the
    stop by its id and `line` is the manifest line, for people. A "warning" does not fail
    `validate` (unless --strict) nor the build; an "error" does."""

    code: str
    message: str
    file: str | None = None
    field: str | None = None
    line: int | None = None
    stop: str | None = None
    hint: str | None = None
    severity: str = "error"  # "error" or "warning"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def to_json(self) -> dict:
        return {k: v for k, v in vars(self).items() if v is not None}

    def __str__(self) -> str:
        where = ":".join(p for p in (self.file, str(self.line) if self.line else None) if p)
        parts = [where] if where else []
        if self.stop:
            parts.append(f"stop {self.stop!r}")
        if self.field:
            parts.append(self.field)
        text = f"{self.message} [{self.code}]"
        if self.hint:
            text += f" (fix: {self.hint})"
        return ": ".join([*parts, text])


class TourError(Exception):
    """Base error. `status` is the HTTP status the edge should use."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field

    def to_json(self) -> dict:
        body: dict = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return {"error": body}


class NotFound(TourError):
    status = 404
    code = "not_found"


class InvalidRequest(TourError):
    status = 400
    code = "invalid_request"


class RangeNotSatisfiable(TourError):
    status = 416
    code = "range_not_satisfiable"

    def __init__(self, message: str, size: int):
        super().__init__(message, field="Range")
        self.size = size


class ManifestInvalid(TourError):
    """A tour (or the set of tours) failed validation; carries every issue found."""

    status = 422
    code = "manifest_invalid"

    def __init__(self, issues: list[Issue]):
        first = issues[0] if issues else Issue("manifest_invalid", "invalid manifest")
        super().__init__(f"{len(issues)} problem(s); first: {first}")
        self.issues = issues


class BuildError(TourError):
    status = 500
    code = "build_failed"


class Unauthorized(TourError):
    status = 401
    code = "unauthorized"


class Forbidden(TourError):
    status = 403
    code = "forbidden"


class Conflict(TourError):
    status = 409
    code = "conflict"


class TooManyRequests(TourError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServiceUnavailable(TourError):
    status = 503
    code = "unavailable"
