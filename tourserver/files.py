"""Writing files so that readers never see half of one: the blob store, the build's
artifacts, keys and every file the CLI writes go through `atomic_write`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes, *, private: bool = False) -> None:
    """Write data to path atomically: readers see the old file or the new, never a part.

    The file gets the mode a plain open() would give it (0666 less the umask, so 0644 under
    umask 022); `private` keeps mkstemp's 0600 for secrets such as keys.json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if not private:
                os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask. Linux reports it in /proc; elsewhere it can only be read by setting
    it, which is briefly process-wide, so that is the fallback, not the rule."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
