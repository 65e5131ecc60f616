"""The transform protocol: small, composable steps over one `Document`.

A transform takes a document and returns a new one (inputs are never mutated, so a
failed step leaves nothing half-changed). It reports through the context, never prints.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from tourserver.ingest.gltf_io import Document


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
    name: str

    def __call__(self, doc: Document, ctx: Context) -> Document: ...


def run(doc: Document, *transforms: Transform, ctx: Context | None = None) -> tuple[Document,
                                                                                     Context]:
    """Apply transforms in order; return the result and the context with facts and timings."""
    ctx = ctx or Context()
    ctx.stack = [t.name for t in transforms]
    for t in transforms:
        started = time.perf_counter()
        doc = t(doc, ctx)
        ctx.timings[t.name] = ctx.timings.get(t.name, 0.0) + time.perf_counter() - started
    return doc, ctx
