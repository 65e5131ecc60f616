"""Hot reload: a running server picks up a newly published build without a restart.

Each process watches `<data>/current` (read once a second in a thread, never on the event
loop) and SIGHUP asks for a check at once. A changed build id loads that catalog in a
thread, then swaps it in with one assignment: a request reads the catalog once, so it
finishes on the one it started with, and nothing is ever half-loaded. A catalog that
fails to load is logged once and the old one keeps serving; the watcher tries again only
when `current` changes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from tourserver.errors import TourError
from tourserver.store.catalog import Catalog, load_build

log = logging.getLogger("tourserver.reload")
POLL_S = 1.0
_MAX_ID_BYTES = 256  # `current` holds a 16-character id; never read a large file whole


class Published:
    """The catalog being served, in a holder: aiohttp freezes the app's state once it
    starts, so a swap replaces this object's attribute, never the app's key."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.loaded_at = time.time()
        self.reloading = False  # a load is in progress

    def swap(self, catalog: Catalog) -> Catalog:
        old, self.catalog = self.catalog, catalog  # the one assignment readers see
        self.loaded_at = time.time()
        return old


def read_current(current_file: Path) -> str | None:
    """The build id `current` names, or None if there is none (yet) or it is unreadable."""
    try:
        with open(current_file, "rb") as fh:
            raw = fh.read(_MAX_ID_BYTES)
    except OSError:
        return None
    return raw.decode("utf-8", "replace").strip() or None


class Reloader:
    """Watches one data directory for one Published holder. `on_swap` runs on the event
    loop after each swap with the new catalog (the live service takes its tours)."""

    def __init__(self, published: Published, data_root: Path,
                 on_swap: Callable[[Catalog], None] | None = None, poll_s: float = POLL_S):
        """poll_s: seconds between looks at `current`; 0 looks only when poked (SIGHUP)."""
        self.published = published
        self.data_root = data_root
        self.on_swap = on_swap
        self.poll_s = poll_s
        self._seen = published.catalog.build_id  # the last id acted on: never load twice
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def poke(self) -> None:
        """Check now (SIGHUP), not at the next tick."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="reload")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s or None)
            self._wake.clear()
            try:
                await self.check()
            except Exception:  # a bug of ours: logged with its traceback, the watch goes on
                log.exception("reload check failed")

    async def check(self) -> bool:
        """Load and swap in the build `current` names if it is new; True if swapped."""
        loop = asyncio.get_running_loop()
        current_file = self.data_root / "current"
        build_id = await loop.run_in_executor(None, read_current, current_file)
        if build_id is None or build_id == self._seen:
            return False
        self._seen = build_id
        old_id = self.published.catalog.build_id
        if build_id == old_id:
            return False
        self.published.reloading = True
        try:
            # Links as the served catalog has them (--public-url, --content-url).
            load = functools.partial(load_build, self.data_root, build_id,
                                     links=self.published.catalog.links)
            catalog = await loop.run_in_executor(None, load)
        except TourError as exc:
            log.error("build %s not loaded, still serving build %s: %s", build_id, old_id,
                      exc.message, extra={"build": old_id, "failed_build": build_id,
                                          "worker": os.getpid()})
            return False
        finally:
            self.published.reloading = False
        self.published.swap(catalog)
        if self.on_swap is not None:
            self.on_swap(catalog)
        # server.start() froze the first catalog out of the collector's sight: freeze the new
        # one too. The old one is still freed although frozen: a catalog holds no reference
        # cycles, so its reference count releases it once the last request using it ends.
        if gc.get_freeze_count():
            gc.freeze()
        log.info("reloaded: build %s -> %s", old_id, build_id,
                 extra={"build": build_id, "previous_build": old_id, "worker": os.getpid()})
        return True
