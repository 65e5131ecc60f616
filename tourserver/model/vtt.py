"""WebVTT subtitles: a small strict parser, enough to check that creators' files are sound."""

from __future__ import annotations

import re
from dataclasses import dataclass

_TIMESTAMP = re.compile(r"^(?:(\d{2,}):)?([0-5]\d):([0-5]\d)\.(\d{3})$")


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


class VttError(ValueError):
    def __init__(self, message: str, line: int):
        super().__init__(f"line {line}: {message}")
        self.line = line


def _parse_timestamp(value: str, line: int) -> float:
    m = _TIMESTAMP.match(value.strip())
    if not m:
        raise VttError(f"bad timestamp {value.strip()!r}", line)
    hours = int(m.group(1) or 0)
    return hours * 3600 + int(m.group(2)) * 60 + int(m.group(3)) + int(m.group(4)) / 1000


def parse_vtt(text: str) -> list[Cue]:
    """Parse WebVTT text into cues; raise VttError naming the line on any problem."""
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not lines or not (lines[0] == "WEBVTT" or lines[0].startswith(("WEBVTT ", "WEBVTT\t"))):
        raise VttError("file must start with 'WEBVTT'", 1)
    cues: list[Cue] = []
    i = 1
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        block_start = i
        block = []
        while i < len(lines) and lines[i].strip():
            block.append(lines[i])
            i += 1
        if block[0].startswith(("NOTE", "STYLE", "REGION")):
            continue
        timing_idx = 0 if "-->" in block[0] else 1
        if timing_idx >= len(block) or "-->" not in block[timing_idx]:
            raise VttError("cue has no timing line 'start --> end'", block_start + 1)
        timing_line = block_start + timing_idx + 1
        start_txt, _, rest = block[timing_idx].partition("-->")
        end_txt = rest.strip().split()[0] if rest.strip() else ""
        start = _parse_timestamp(start_txt, timing_line)
        end = _parse_timestamp(end_txt, timing_line)
        if end <= start:
            raise VttError("cue ends before it starts", timing_line)
        if cues and start < cues[-1].start_s:
            raise VttError("cues are not in time order", timing_line)
        text_lines = block[timing_idx + 1 :]
        if not text_lines:
            raise VttError("cue has no text", timing_line)
        cues.append(Cue(start, end, "\n".join(text_lines)))
    if not cues:
        raise VttError("no cues", 1)
    return cues
