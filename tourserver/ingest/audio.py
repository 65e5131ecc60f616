"""Narration audio, recognised by its bytes rather than its name.

Browsers choose a decoder by the served type, which follows the file's extension: an
M4A named .mp3, or a WAV renamed to .mp3, fails on the phone however good the audio is.
`probe_audio` sniffs the container itself (MP3: an ID3v2 tag or an MPEG Layer III frame
whose next frames sit where it says it ends; M4A: an `ftyp` box with an MP4 brand and an
AAC (`mp4a`) track), checks that the name matches, that the file is not cut short, and
measures the duration with mutagen. Everything else is refused, naming what it really is.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import mutagen
from mutagen.mp3 import MP3, MPEGInfo
from mutagen.mp4 import MP4, MP4Info

from tourserver.errors import TourError

# What each accepted extension must hold (the store serves them as audio/mpeg, audio/mp4).
FORMAT_FOR_EXTENSION = {".mp3": "mp3", ".m4a": "m4a"}
FORMAT_NAMES = {"mp3": "MP3 audio", "m4a": "AAC audio in an MP4 (M4A) container"}
EXTENSION_FOR_FORMAT = {v: k for k, v in FORMAT_FOR_EXTENSION.items()}
MP4_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"mp41", b"mp42", b"isom", b"iso2", b"iso3", b"iso4",
              b"iso5", b"iso6", b"dash", b"MSNV", b"3gp4", b"3gp5", b"3gp6"}
CONVERT_HINT = ("convert it to MP3 or to AAC in .m4a, e.g. "
                "`ffmpeg -i IN -c:a aac -b:a 96k OUT.m4a`")
_SCAN_BYTES = 64 * 1024  # how far past an ID3 tag the first MPEG frame may start
_FRAMES_TO_CHAIN = 3  # consecutive frames that must line up: random bytes never do
_MAX_MP4_BOXES = 10_000

# MPEG audio header tables: bitrates in kbit/s by (MPEG-1?, layer), sample rates by version.
_BITRATES = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_VERSION_NAMES = {3: "MPEG-1", 2: "MPEG-2", 0: "MPEG-2.5"}
# Signatures of other formats, only to say what a refused file is.
_OTHER = ((b"OggS", "Ogg"), (b"fLaC", "FLAC audio"), (b"\x1aE\xdf\xa3", "a WebM/Matroska file"),
          (b"#!AMR", "AMR audio"), (b"MThd", "a MIDI file"), (b"\x89PNG", "a PNG image"),
          (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"), (b"glTF", "a GLB scene"),
          (b"WEBVTT", "WebVTT subtitles"), (b"\xef\xbb\xbfWEBVTT", "WebVTT subtitles"),
          (b"PK\x03\x04", "a ZIP archive"), (b"%PDF", "a PDF document"))


class AudioRejected(TourError):
    """Audio that cannot be served. `message` is a predicate for the file's name ("is a WAV
    file ..."), so callers can say which file; `hint` says how to fix it."""

    code = "audio_invalid"

    def __init__(self, message: str, *, code: str, hint: str):
        super().__init__(message, code=code)
        self.hint = hint


@dataclass(frozen=True)
class AudioInfo:
    format: str  # "mp3" or "m4a"
    codec: str  # "mp3" or the MP4 codec string ("mp4a.40.2")
    duration_s: float


@dataclass(frozen=True)
class _Frame:
    version: int  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
    layer: int  # 1, 2 or 3
    sample_rate: int
    channels: int
    length: int  # bytes, header included


def _frame_at(buf: bytes, pos: int) -> _Frame | None:
    """The MPEG audio frame header at buf[pos:], or None if the bytes there are not one."""
    if pos + 4 > len(buf):
        return None
    b1, b2, b3 = buf[pos + 1], buf[pos + 2], buf[pos + 3]
    if buf[pos] != 0xFF or (b1 & 0xE0) != 0xE0:
        return None
    version, layer_bits = (b1 >> 3) & 3, (b1 >> 1) & 3
    bitrate_idx, rate_idx, padding = b2 >> 4, (b2 >> 2) & 3, (b2 >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_idx in (0, 15) or rate_idx == 3:
        return None  # reserved values (and "free" bitrate, which no encoder writes today)
    layer = 4 - layer_bits
    mpeg1 = version == 3
    bitrate = _BITRATES[(mpeg1, layer)][bitrate_idx] * 1000
    rate = _SAMPLE_RATES[version][rate_idx]
    if layer == 1:
        length = (12 * bitrate // rate + padding) * 4
    else:
        length = (144 if mpeg1 or layer == 2 else 72) * bitrate // rate + padding
    return _Frame(version, layer, rate, 1 if (b3 >> 6) == 3 else 2, length)


def _id3_size(head: bytes) -> int:
    """Bytes taken by an ID3v2 tag at the start (0 if none)."""
    if len(head) < 10 or not head.startswith(b"ID3"):
        return 0
    size = head[6:10]
    if any(b & 0x80 for b in size):
        return 0  # not a synchsafe size: not a real tag
    footer = 10 if head[5] & 0x10 else 0
    return 10 + footer + (size[0] << 21 | size[1] << 14 | size[2] << 7 | size[3])


def _first_mpeg_frame(buf: bytes, start: int, total: int) -> tuple[int, _Frame] | None:
    """The first frame at or after `start` that is followed by frames where it says it ends
    (a chain of three, or frames running exactly to the end of a short file)."""
    pos = buf.find(b"\xff", start)
    while pos != -1:
        first = _frame_at(buf, pos)
        if first is not None:
            frame, at, ok = first, pos, True
            for _ in range(_FRAMES_TO_CHAIN - 1):
                at += frame.length
                if at == total:
                    break  # a short file that ends on a frame boundary
                nxt = _frame_at(buf, at)
                if nxt is None or (nxt.version, nxt.layer, nxt.sample_rate) != (
                        first.version, first.layer, first.sample_rate):
                    ok = False
                    break
                frame = nxt
            if ok:
                return pos, first
        pos = buf.find(b"\xff", pos + 1)
    return None


def _xing_bytes(buf: bytes, pos: int, frame: _Frame) -> int | None:
    """The stream size an encoder wrote in the first frame's Xing/Info header, if any."""
    side = (32 if frame.channels == 2 else 17) if frame.version == 3 else (
        17 if frame.channels == 2 else 9)
    at = pos + 4 + side
    tag = buf[at:at + 4]
    if tag not in (b"Xing", b"Info") or at + 16 > len(buf):
        return None
    flags = struct.unpack_from(">I", buf, at + 4)[0]
    offset = at + 8 + (4 if flags & 1 else 0)
    if not flags & 2 or offset + 4 > len(buf):
        return None
    return struct.unpack_from(">I", buf, offset)[0]


def _mp4_boxes(fh, total: int) -> tuple[list[tuple[bytes, int]], str | None]:
    """The top-level boxes (type, size) of an MP4 file, and why it is cut short, if it is."""
    boxes: list[tuple[bytes, int]] = []
    pos = 0
    while pos < total and len(boxes) < _MAX_MP4_BOXES:
        fh.seek(pos)
        header = fh.read(16)
        if len(header) < 8:
            return boxes, f"a box header at byte {pos} is cut off"
        size, kind = struct.unpack_from(">I4s", header)
        if size == 1:
            if len(header) < 16:
                return boxes, f"a box header at byte {pos} is cut off"
            size = struct.unpack_from(">Q", header, 8)[0]
        elif size == 0:
            size = total - pos  # "to the end of the file"
        if size < 8:
            return boxes, f"box {kind!r} at byte {pos} has an impossible size {size}"
        if pos + size > total:
            return boxes, (f"box {kind.decode('latin-1')!r} claims {size:,} bytes but the file "
                           f"ends {total - pos:,} bytes after it starts")
        boxes.append((kind, size))
        pos += size
    return boxes, None


def describe(head: bytes) -> str:
    """What a file that is not MP3 or M4A actually is, from its first bytes."""
    known = _known_other(head)
    if known:
        return known
    if not head:
        return "an empty file"
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF6) == 0xF0:
        return "raw AAC (ADTS)"
    try:
        text = head[:512].decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised data"
    return "unrecognised data" if "\0" in text else "a text file"


def _known_other(head: bytes) -> str | None:
    """The name of a well-known non-MP3, non-M4A format whose signature `head` starts with."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "a WAV file (RIFF/WAVE)"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "AIFF audio"
    for magic, name in _OTHER:
        if head.startswith(magic):
            if name == "Ogg":
                return ("Ogg Opus audio" if b"OpusHead" in head[:64] else
                        "Ogg Vorbis audio" if b"\x01vorbis" in head[:64] else "an Ogg file")
            return name
    return None


def _sniff(fh, total: int) -> tuple[str | None, str]:
    """("mp3" | "m4a" | None, what the file is) from its bytes."""
    head = fh.read(_SCAN_BYTES)
    known = _known_other(head)
    if known:  # before the frame search: PCM samples must not pass for MPEG frames
        return None, known
    if head[4:8] == b"ftyp" and len(head) >= 16:
        brands = {head[8:12]} | {head[i:i + 4] for i in range(16, min(len(head), 64), 4)}
        if brands & MP4_BRANDS:
            return "m4a", "an MP4 (M4A) file"
        return None, f"an MP4-family file with brand {head[8:12].decode('latin-1')!r}"
    tag = _id3_size(head)
    if tag:
        fh.seek(tag)
        head = fh.read(_SCAN_BYTES)
    found = _first_mpeg_frame(head, 0, total - tag)
    if found is not None:
        _, frame = found
        if frame.layer == 3:
            return "mp3", "MP3 audio"
        name = f"{_VERSION_NAMES[frame.version]} Layer {'I' * frame.layer} audio"
        return None, name + (" (MP2)" if frame.layer == 2 else "")
    if tag:
        return None, "an ID3 tag with no MPEG audio frames after it"
    return None, describe(head)


def probe_audio(path: Path) -> AudioInfo:
    """Identify and measure one narration file. Raises AudioRejected (codes `file_empty`,
    `audio_format`, `audio_type_mismatch`, `audio_truncated`, `audio_invalid`,
    `audio_empty`) whose message reads after the file's name."""
    suffix = path.suffix.lower()
    wanted = FORMAT_FOR_EXTENSION.get(suffix)
    total = path.stat().st_size
    if total == 0:
        raise AudioRejected("is empty (0 bytes)", code="file_empty",
                            hint="export the narration again")
    with path.open("rb") as fh:
        found, what = _sniff(fh, total)
        if found is None:
            raise AudioRejected(f"is {what}, not MP3 or AAC (M4A) audio", code="audio_format",
                                hint=CONVERT_HINT)
        if wanted is not None and found != wanted:
            raise AudioRejected(
                f"is {FORMAT_NAMES[found]} but named {suffix}: browsers pick the decoder by "
                "the name", code="audio_type_mismatch",
                hint=f"rename it to {EXTENSION_FOR_FORMAT[found]} (and update the manifest)")
        fh.seek(0)
        cut = _truncation(fh, found, total)
    if cut:
        raise AudioRejected(f"is cut short: {cut}", code="audio_truncated",
                            hint="copy or export the file again")
    return _measure(path, found)


def _truncation(fh, found: str, total: int) -> str | None:
    if found == "m4a":
        boxes, cut = _mp4_boxes(fh, total)
        if cut is None and not any(kind == b"moov" for kind, _ in boxes):
            return "it has no 'moov' box (the index of the audio)"
        return cut
    head = fh.read(_SCAN_BYTES)
    tag = _id3_size(head)
    if tag:
        fh.seek(tag)
        head = fh.read(_SCAN_BYTES)
    found_frame = _first_mpeg_frame(head, 0, total - tag)
    if found_frame is None:
        return None
    pos, frame = found_frame
    expected = _xing_bytes(head, pos, frame)
    have = total - tag - pos
    # Encoders count the stream from its first frame; an ID3v1 tag may follow (128 bytes).
    if expected is not None and have + 1024 < expected:
        return f"its header says {expected:,} bytes of audio, the file has {have:,}"
    return None


def _measure(path: Path, found: str) -> AudioInfo:
    # mutagen declares FileType.info as None (a class default); each file type sets its own
    info: MPEGInfo | MP4Info
    try:
        if found == "mp3":
            info = cast(MPEGInfo, MP3(path).info)
            codec = "mp3"
        else:
            info = cast(MP4Info, MP4(path).info)
            codec = info.codec or ""
    except (mutagen.MutagenError, struct.error, ValueError, EOFError) as exc:
        raise AudioRejected(f"cannot be read as {FORMAT_NAMES[found]}: {exc}",
                            code="audio_invalid", hint="export the narration again") from None
    if found == "m4a" and not codec.startswith("mp4a"):
        raise AudioRejected(f"is an MP4 file whose audio is {codec or 'missing'}, not AAC",
                            code="audio_format", hint=CONVERT_HINT)
    length = float(info.length or 0.0)
    if not length > 0:
        raise AudioRejected("has no audio (0 seconds long)", code="audio_empty",
                            hint="export the narration again")
    return AudioInfo(found, codec, length)


__all__ = ["AudioInfo", "AudioRejected", "FORMAT_FOR_EXTENSION", "describe", "probe_audio"]
