"""The bundled narration: AAC in MP4 with an MP3 fallback, subtitles timed to the audio."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import yaml
from support import REPO

from tourserver.model.vtt import parse_vtt

TOUR = yaml.safe_load((REPO / "tours/chongqing-night/tour.yaml").read_text())
JOBS = [(stop["id"], lang, nar) for stop in TOUR["stops"]
        for lang, nar in stop["narration"].items()]


def mp4_duration_s(path: Path) -> float:
    """Duration from the movie header box (moov/mvhd), read without any media library."""
    data = path.read_bytes()

    def boxes(start: int, end: int):
        pos = start
        while pos + 8 <= end:
            size, kind = struct.unpack_from(">I4s", data, pos)
            header = 8
            if size == 1:
                size = struct.unpack_from(">Q", data, pos + 8)[0]
                header = 16
            if size < header:
                raise ValueError(f"bad box at {pos}")
            yield kind, pos + header, pos + size
            pos += size

    for kind, body, end in boxes(0, len(data)):
        if kind == b"moov":
            for inner, ibody, _ in boxes(body, end):
                if inner == b"mvhd":
                    version = data[ibody]
                    if version == 1:
                        timescale, duration = struct.unpack_from(">IQ", data, ibody + 20)
                    else:
                        timescale, duration = struct.unpack_from(">II", data, ibody + 12)
                    return duration / timescale
    raise ValueError("no moov/mvhd box")


def test_every_stop_has_both_languages():
    assert {lang for _, lang, _ in JOBS} == {"en", "zh-Hans"}
    assert len(JOBS) == 2 * len(TOUR["stops"]) >= 10


@pytest.mark.parametrize(("stop", "lang", "nar"), JOBS, ids=[f"{s}-{lang}" for s, lang, _ in JOBS])
def test_subtitles_are_timed_to_the_audio(stop, lang, nar):
    m4a, mp3 = (REPO / p for p in nar["audio"])
    assert m4a.suffix == ".m4a" and mp3.suffix == ".mp3"
    head = m4a.read_bytes()[:12]
    assert head[4:8] == b"ftyp"  # an MP4 container
    first = mp3.read_bytes()[:3]
    assert first == b"ID3" or (first[0] == 0xFF and first[1] & 0xE0 == 0xE0)  # MPEG frame sync
    duration = mp4_duration_s(m4a)
    cues = parse_vtt((REPO / nar["subtitles"]).read_text("utf-8"))
    assert cues[-1].end_s <= duration + 0.05, (cues[-1].end_s, duration)
    # The cues cover the speech: they start near the beginning and end near the end.
    assert cues[0].start_s < 1.0
    assert cues[-1].end_s > duration - 2.0
    # Every cue's text comes from the transcript, in order.
    transcript = "".join(nar["transcript"].split())
    pos = 0
    for cue in cues:
        text = "".join(cue.text.split())
        found = transcript.find(text[:8], pos)
        assert found >= 0, (cue.text, stop, lang)
        pos = found
