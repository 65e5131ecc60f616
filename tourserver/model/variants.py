"""Choosing a scene variant from standard client hints.

Rules, first match wins (documented in docs/api.md):
  1. `Save-Data: on`                                  -> low
  2. `ECT` slow-2g or 2g                              -> low;  3g -> medium
  3. `Device-Memory` below 2 GiB                      -> low;  below 4 GiB -> medium
  4. `ECT: 4g` and `Device-Memory` 4 GiB or more      -> high
  5. otherwise                                        -> the server's default tier (medium)
"""

from __future__ import annotations

from collections.abc import Mapping

CLIENT_HINTS = ("Save-Data", "ECT", "Device-Memory")


def _device_memory(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        memory = float(value)
    except ValueError:
        return None
    return memory if memory > 0 else None


def choose_tier(headers: Mapping[str, str], default: str = "medium") -> str:
    if headers.get("Save-Data", "").strip().lower() == "on":
        return "low"
    ect = headers.get("ECT", "").strip().lower()
    memory = _device_memory(headers.get("Device-Memory"))
    if ect in ("slow-2g", "2g"):
        return "low"
    if memory is not None and memory < 2:
        return "low"
    if ect == "3g" or (memory is not None and memory < 4):
        return "medium"
    if ect == "4g" and memory is not None and memory >= 4:
        return "high"
    return default
