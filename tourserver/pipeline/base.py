"""The transform protocol: small, composable steps over one `Document`.

A transform takes a document and returns a new one (inputs are never mutated, so a
failed step leaves nothing half-changed). It reports through the context, never prints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from tourserver.gltf.document import Document


@dataclass
class Context:
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("tourserver.pipeline"))
    stack: list[str] = field(default_factory=list)
    # Facts a step wants the caller to know (e.g. the geometric error of a simplification).
    facts: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        """A count that sums over passes (one transform may run more than once)."""
        self.facts[key] = self.facts.get(key, 0) + value

    def most(self, key: str, value: float) -> None:
        """A bound that keeps the largest value over passes."""
        self.facts[key] = max(self.facts.get(key, 0.0), value)


def fact_prefix(name: str) -> str:
    """A transform's facts are named after it, so a second pass under another name (for
    example `weld-quantized`) reports apart: `weld_quantized.vertices_after`."""
    return name.replace("-", "_")


class Transform(Protocol):
    """A step. Two optional attributes let `run` start a step's work early:

    - `keeps_images = True` (class attribute): the step never changes images or textures,
      nor which material slots sample them (geometry steps; quantize may add a
      KHR_texture_transform), so work that needs only those can run beside it;
    - `prepare(doc) -> object with close()`: start this step's work for `doc` in the
      background. `run` calls it as soon as only steps that keep images stand between,
      and the step's own call later picks up what still applies (by content: a result
      that no longer applies costs time, never a wrong output).
    """

    @property
    def name(self) -> str: ...  # read-only: transforms are frozen dataclasses

    def __call__(self, doc: Document, ctx: Context) -> Document: ...


def run(doc: Document, *transforms: Transform, ctx: Context | None = None,
        progress: Callable[[int, int, str], None] | None = None) -> tuple[Document, Context]:
    """Apply transforms in order; return the result and the context with facts and timings
    (each step's own wall time: a prepared step's work started earlier, beside others)."""
    ctx = ctx or Context()
    ctx.stack = [t.name for t in transforms]
    prepared: dict[int, object] = {}
    try:
        for number, t in enumerate(transforms):
            _prepare_ahead(transforms, number, doc, prepared)
            if progress is not None:
                progress(number + 1, len(transforms), t.name)
            started = time.perf_counter()
            doc = t(doc, ctx)
            ctx.timings[t.name] = ctx.timings.get(t.name, 0.0) + time.perf_counter() - started
    finally:
        for handle in prepared.values():
            handle.close()  # type: ignore[attr-defined]
    return doc, ctx


def _prepare_ahead(transforms: tuple[Transform, ...], now: int, doc: Document,
                   prepared: dict[int, object]) -> None:
    """Prepare every later step that will see `doc`'s images as they are: those with
    only image-keeping steps from `now` up to them."""
    for later in range(now, len(transforms)):
        step = transforms[later]
        if later > now and later not in prepared and hasattr(step, "prepare"):
            prepared[later] = step.prepare(doc)
        if not getattr(step, "keeps_images", False):
            return
