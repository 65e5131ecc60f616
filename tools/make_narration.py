#!/usr/bin/env python3
"""Synthesise the narration of a tour: audio (.m4a + .mp3) and WebVTT subtitles.

Reads ``stops[].narration[lang].transcript`` from the tour manifest, splits each
transcript into sentences, speaks every sentence separately with eSpeak NG, measures
the real length of each sentence from its WAV, joins them with short pauses and writes

    assets/<tour>/narration/<lang>/<stop>.m4a   AAC-LC in MP4, mono, 22.05 kHz, 48 kb/s, faststart
    assets/<tour>/narration/<lang>/<stop>.mp3   MP3 fallback, mono, 22.05 kHz, 48 kb/s
    assets/<tour>/narration/<lang>/<stop>.vtt   WebVTT, one or more cues per sentence,
                                                timed to the real sentence offsets

(the output paths are taken from the manifest's ``audio`` and ``subtitles`` fields).

Usage (from the repository root):

    python3 tools/make_narration.py                       # build everything
    python3 tools/make_narration.py --check               # verify cues against ffprobe
    python3 tools/make_narration.py --only jiefangbei --lang en

Needs ``espeak-ng``, ``ffmpeg`` and ``ffprobe`` on PATH. eSpeak NG is GPL-3.0; the
audio it produces is ours (CC0-1.0). Output is deterministic as far as ffmpeg allows
(bitexact flags, no metadata).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOUR = ROOT / "tours" / "chongqing-night" / "tour.yaml"

SAMPLE_RATE = 22050
BITRATE = "48k"
LEAD_IN_S = 0.30  # silence before the first sentence
PAUSE_S = 0.45  # silence between sentences
TAIL_S = 0.60  # silence after the last sentence

# eSpeak NG voice and speed (words per minute) per BCP-47 tag of the manifest.
VOICES = {
    "en": ("en-gb", 155),
    "zh-Hans": ("cmn", 150),
}
# Subtitle line width (characters) and lines per cue.
LINE_WIDTH = {"en": 42, "zh-Hans": 20}
MAX_LINES = 2

_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")


@dataclass
class Sentence:
    text: str
    start: float  # seconds from the start of the joined audio
    end: float


# --------------------------------------------------------------------------- text


def split_sentences(text: str, lang: str) -> list[str]:
    """Split a transcript into sentences (Latin . ! ? and Chinese 。！？)."""
    text = " ".join(text.split())
    if lang.startswith("zh"):
        # Break after 。！？ (and any closing quotes/brackets that follow them).
        parts = re.findall(r".+?[。！？!?][”’」』）)]*|.+$", text)
    else:
        parts = re.split(r"(?<=[.!?])[\"'”’)]*\s+(?=[A-Z0-9\"“‘(])", text)
    return [p.strip() for p in parts if p.strip()]


def _tokens(text: str, lang: str) -> tuple[list[str], str]:
    """Split a sentence into unbreakable tokens and the joiner used between them."""
    width = LINE_WIDTH.get(lang, 42)
    if lang.startswith("zh") or _CJK.search(text):
        # Clauses ending in Chinese punctuation; over-long clauses fall back to characters.
        clauses = re.findall(r"[^，、；：,;:]*[，、；：,;:]|[^，、；：,;:]+$", text)
        toks: list[str] = []
        for c in clauses:
            if not c:
                continue
            if len(c) <= width:
                toks.append(c)
            else:
                toks.extend(c)
        return toks, ""
    return text.split(), " "


def _pack(tokens: list[str], joiner: str, width: int) -> list[str]:
    """Greedy line packing of tokens into lines of at most `width` characters."""
    lines: list[str] = []
    cur = ""
    for t in tokens:
        cand = f"{cur}{joiner}{t}" if cur else t
        if cur and len(cand) > width:
            lines.append(cur)
            cur = t
        else:
            cur = cand
    if cur:
        lines.append(cur)
    return lines


def _balanced_lines(tokens: list[str], joiner: str, width: int) -> list[str]:
    """Lines for one cue: a single line if it fits, else the most even two-line split."""
    one = joiner.join(tokens)
    if len(one) <= width or len(tokens) < 2:
        return _pack(tokens, joiner, width)
    best, best_cost = None, None
    for i in range(1, len(tokens)):
        a, b = joiner.join(tokens[:i]), joiner.join(tokens[i:])
        if len(a) > width or len(b) > width:
            continue
        cost = abs(len(a) - len(b)) - (6 if a[-1] in ",;:，、；：" else 0)
        if best_cost is None or cost < best_cost:
            best, best_cost = [a, b], cost
    return best if best else _pack(tokens, joiner, width)


def cue_texts(text: str, lang: str) -> list[list[str]]:
    """Split one sentence into cues of at most MAX_LINES lines, balanced in length,
    preferring to break after punctuation. Returns a list of cues (lists of lines)."""
    width = LINE_WIDTH.get(lang, 42)
    tokens, joiner = _tokens(text, lang)
    if len(_balanced_lines(tokens, joiner, width)) <= MAX_LINES:
        return [_balanced_lines(tokens, joiner, width)]
    n_lines = len(_pack(tokens, joiner, width))
    n_cues = max(1, -(-n_lines // MAX_LINES))
    cues: list[list[str]] = []
    rest = tokens
    for k in range(n_cues, 0, -1):
        if k == 1:
            cues.append(_balanced_lines(rest, joiner, width))
            break
        total = len(joiner.join(rest))
        target = total / k
        best_i, best_cost = None, None
        for i in range(1, len(rest)):
            head = rest[:i]
            if len(_pack(head, joiner, width)) > MAX_LINES:
                break
            h = joiner.join(head)
            cost = abs(len(h) - target) - (8 if h[-1] in ",;:，、；：" else 0)
            if best_cost is None or cost < best_cost:
                best_i, best_cost = i, cost
        if best_i is None:
            best_i = 1
        cues.append(_balanced_lines(rest[:best_i], joiner, width))
        rest = rest[best_i:]
        if not rest:
            break
    return cues


# --------------------------------------------------------------------------- audio


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True)


def speak(text: str, lang: str, out_wav: Path) -> None:
    voice, speed = VOICES[lang]
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as fh:
        fh.write(text + "\n")
        txt = fh.name
    try:
        _run(["espeak-ng", "-v", voice, "-s", str(speed), "-b", "1", "-w", str(out_wav), "-f", txt])
    finally:
        Path(txt).unlink(missing_ok=True)


def read_wav(path: Path) -> tuple[bytes, int, int, int]:
    with wave.open(str(path), "rb") as w:
        return w.readframes(w.getnframes()), w.getframerate(), w.getnchannels(), w.getsampwidth()


def silence(seconds: float, rate: int, width: int) -> bytes:
    return b"\x00" * (int(round(seconds * rate)) * width)


def synthesise(sentences: list[str], lang: str, tmp: Path) -> tuple[Path, list[Sentence], float]:
    """Speak each sentence, join with pauses; return (wav, timed sentences, duration)."""
    chunks: list[bytes] = []
    timed: list[Sentence] = []
    rate = width = None
    pos = 0  # frames
    for i, text in enumerate(sentences):
        wav = tmp / f"s{i:02d}.wav"
        speak(text, lang, wav)
        frames, r, ch, sw = read_wav(wav)
        if ch != 1:
            raise RuntimeError(f"espeak-ng produced {ch} channels, expected mono")
        if rate is None:
            rate, width = r, sw
            chunks.append(silence(LEAD_IN_S, rate, width))
            pos += int(round(LEAD_IN_S * rate))
        elif (r, sw) != (rate, width):
            raise RuntimeError("espeak-ng changed sample format between sentences")
        else:
            chunks.append(silence(PAUSE_S, rate, width))
            pos += int(round(PAUSE_S * rate))
        n = len(frames) // width
        timed.append(Sentence(text, pos / rate, (pos + n) / rate))
        chunks.append(frames)
        pos += n
    assert rate is not None and width is not None
    chunks.append(silence(TAIL_S, rate, width))
    pos += int(round(TAIL_S * rate))
    joined = tmp / "joined.wav"
    with wave.open(str(joined), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"".join(chunks))
    return joined, timed, pos / rate


def encode(wav: Path, m4a: Path | None, mp3: Path | None) -> None:
    common = [
        "ffmpeg",
        "-nostdin",
        "-y",
        "-hide_banner",
        "-loglevel",
        "error",
        "-fflags",
        "+bitexact",
        "-i",
        str(wav),
        "-map_metadata",
        "-1",
        "-ac",
        "1",
        "-ar",
        str(SAMPLE_RATE),
        "-flags",
        "+bitexact",
        "-fflags",
        "+bitexact",
    ]
    if m4a is not None:
        m4a.parent.mkdir(parents=True, exist_ok=True)
        _run(
            common
            + [
                "-c:a",
                "aac",
                "-profile:a",
                "aac_low",
                "-b:a",
                BITRATE,
                "-movflags",
                "+faststart",
                "-f",
                "mp4",
                str(m4a),
            ]
        )
    if mp3 is not None:
        mp3.parent.mkdir(parents=True, exist_ok=True)
        _run(
            common
            + [
                "-c:a",
                "libmp3lame",
                "-b:a",
                BITRATE,
                "-id3v2_version",
                "0",
                "-write_id3v1",
                "0",
                "-f",
                "mp3",
                str(mp3),
            ]
        )


# --------------------------------------------------------------------------- WebVTT


def _ts(t: float) -> str:
    ms = int(round(t * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def build_cues(timed: list[Sentence], lang: str) -> list[tuple[float, float, list[str]]]:
    """One cue per sentence; a sentence longer than MAX_LINES lines is split into
    several cues whose times divide the sentence's real span by character count."""
    cues = []
    for s in timed:
        groups = cue_texts(s.text, lang)
        total = sum(len("".join(g)) for g in groups)
        t = s.start
        for k, g in enumerate(groups):
            share = len("".join(g)) / total if total else 1.0
            end = s.end if k == len(groups) - 1 else t + (s.end - s.start) * share
            cues.append((t, end, g))
            t = end
    return cues


def write_vtt(path: Path, cues: list[tuple[float, float, list[str]]], lang: str) -> None:
    out = ["WEBVTT", ""]
    for i, (a, b, lines) in enumerate(cues, 1):
        out.append(str(i))
        out.append(f"{_ts(a)} --> {_ts(b)}")
        out.extend(lines)
        out.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out), encoding="utf-8", newline="\n")


_CUE_RE = re.compile(r"^(\d{2}):(\d{2}):(\d{2})\.(\d{3}) --> (\d{2}):(\d{2}):(\d{2})\.(\d{3})")


def parse_vtt(path: Path) -> list[tuple[float, float, list[str]]]:
    text = path.read_text(encoding="utf-8")
    if not text.startswith("WEBVTT"):
        raise ValueError(f"{path}: missing WEBVTT header")
    cues, lines_iter = [], text.splitlines()
    i = 0
    while i < len(lines_iter):
        m = _CUE_RE.match(lines_iter[i])
        if m:
            g = [int(x) for x in m.groups()]
            a = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
            b = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
            body = []
            i += 1
            while i < len(lines_iter) and lines_iter[i].strip():
                body.append(lines_iter[i])
                i += 1
            cues.append((a, b, body))
        i += 1
    return cues


# --------------------------------------------------------------------------- driver


def ffprobe_duration(path: Path) -> float:
    out = _run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)]
    ).stdout
    return float(json.loads(out)["format"]["duration"])


def ffprobe_stream(path: Path) -> dict:
    out = _run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_name,profile,sample_rate,channels,bit_rate",
            "-of",
            "json",
            str(path),
        ]
    ).stdout
    streams = json.loads(out).get("streams", [])
    return streams[0] if streams else {}


def jobs(tour: dict, only: set[str] | None, langs: set[str] | None):
    for stop in tour["stops"]:
        if only and stop["id"] not in only:
            continue
        for lang, nar in stop.get("narration", {}).items():
            if langs and lang not in langs:
                continue
            yield stop["id"], lang, nar


def out_paths(nar: dict) -> tuple[Path | None, Path | None, Path]:
    m4a = mp3 = None
    for p in nar["audio"]:
        if p.endswith(".m4a"):
            m4a = ROOT / p
        elif p.endswith(".mp3"):
            mp3 = ROOT / p
    return m4a, mp3, ROOT / nar["subtitles"]


def build(tour: dict, only, langs) -> int:
    for stop_id, lang, nar in jobs(tour, only, langs):
        if lang not in VOICES:
            print(f"skip {stop_id}/{lang}: no voice configured", file=sys.stderr)
            continue
        sentences = split_sentences(nar["transcript"], lang)
        m4a, mp3, vtt = out_paths(nar)
        with tempfile.TemporaryDirectory(prefix="narration-") as td:
            wav, timed, dur = synthesise(sentences, lang, Path(td))
            encode(wav, m4a, mp3)
        cues = build_cues(timed, lang)
        write_vtt(vtt, cues, lang)
        print(
            f"{lang:8s} {stop_id:18s} {len(sentences)} sentences, {len(cues):2d} cues, {dur:6.2f} s"
        )
    return 0


def check(tour: dict, only, langs) -> int:
    problems = 0
    total = 0.0
    print(
        f"{'lang':8s} {'stop':18s} {'cues':>4s} {'last end':>9s} {'m4a':>8s} {'mp3':>8s}"
        "  codec/rate/ch"
    )
    for stop_id, lang, nar in jobs(tour, only, langs):
        m4a, mp3, vtt = out_paths(nar)
        issues = []
        durs = {}
        for p in (m4a, mp3, vtt):
            if p is None or not p.is_file():
                issues.append(f"missing {p}")
        if issues:
            problems += len(issues)
            print(f"{lang:8s} {stop_id:18s} " + "; ".join(issues))
            continue
        for p in (m4a, mp3):
            durs[p.suffix] = ffprobe_duration(p)
        cues = parse_vtt(vtt)
        last = max((b for _, b, _ in cues), default=0.0)
        prev_end = 0.0
        for a, b, body in cues:
            if not (a < b):
                issues.append(f"empty cue at {a:.3f}")
            if a + 1e-6 < prev_end:
                issues.append(f"overlapping cue at {a:.3f}")
            prev_end = b
            if lang == "en":
                long = [ln for ln in body if len(ln) > LINE_WIDTH["en"]]
                if long:
                    issues.append(f"line > {LINE_WIDTH['en']} chars: {long[0]!r}")
        for ext, d in durs.items():
            if last > d + 1e-3:
                issues.append(f"cue end {last:.3f} > {ext} duration {d:.3f}")
        s = ffprobe_stream(m4a)
        info = (
            f"{s.get('codec_name')}-{s.get('profile')}/{s.get('sample_rate')}/{s.get('channels')}"
        )
        if s.get("codec_name") != "aac" or s.get("channels") != 1:
            issues.append(f"m4a stream is {info}")
        total += durs[".m4a"]
        status = "OK" if not issues else "FAIL: " + "; ".join(issues)
        problems += len(issues)
        print(
            f"{lang:8s} {stop_id:18s} {len(cues):4d} {last:9.3f} {durs['.m4a']:8.3f} "
            f"{durs['.mp3']:8.3f}  {info}  {status}"
        )
    print(f"total narration (m4a): {total:.1f} s; problems: {problems}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tour", type=Path, default=DEFAULT_TOUR, help="tour manifest (YAML)")
    ap.add_argument(
        "--check", action="store_true", help="verify existing outputs instead of building"
    )
    ap.add_argument("--only", action="append", help="stop id (repeatable)")
    ap.add_argument("--lang", action="append", help="language tag (repeatable)")
    args = ap.parse_args(argv)
    for tool in ("espeak-ng", "ffmpeg", "ffprobe") if not args.check else ("ffprobe",):
        if shutil.which(tool) is None:
            print(f"error: {tool} not found on PATH", file=sys.stderr)
            return 2
    tour = yaml.safe_load(args.tour.read_text(encoding="utf-8"))
    only = set(args.only) if args.only else None
    langs = set(args.lang) if args.lang else None
    return check(tour, only, langs) if args.check else build(tour, only, langs)


if __name__ == "__main__":
    sys.exit(main())
