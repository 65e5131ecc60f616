"""Files checked by their content: every class of broken scene, audio and subtitle file a
creator really ships is an issue naming the stop, the file and the manifest field."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import pytest
from support import REPO, write_gltf, write_wav

from tourserver.gltf.document import Document, write_glb
from tourserver.ingest.audio import probe_audio
from tourserver.ingest.files import check_tour_files, scene_dependencies
from tourserver.ingest.loaders import load_asset
from tourserver.ingest.tours import find_manifest, read_manifest
from tourserver.model.manifest import parse_tour

NARRATION = REPO / "assets/chongqing-night/narration/en"
MANIFEST = "tours/mini/tour.yaml"
SCENE = "assets/mini/a.glb"
SCENE_FIELD = "/stops/0/scenes/0/source"


@pytest.fixture()
def root(mini_root) -> Path:
    """The mini tour: a small scene and real narration (the demo's, 39 s)."""
    return mini_root


def check(root: Path, tour=None):
    if tour is None:
        manifest = find_manifest(root / "tours/mini")
        tour = parse_tour(read_manifest(manifest), MANIFEST)
    return check_tour_files(tour, root, MANIFEST)


def only_issue(root: Path, field: str, stop: str = "mini-a", tour=None):
    _, issues = check(root, tour)
    mine = [i for i in issues if i.field == field and i.stop == stop]
    assert len(mine) == 1, issues
    issue = mine[0]
    assert issue.file == MANIFEST and issue.is_error and issue.hint
    assert MANIFEST not in issue.message and issue.code not in issue.message
    return issue


def test_good_files_pass(root):
    files, issues = check(root)
    assert issues == []
    assert set(files) == {SCENE, *(f"assets/mini/{lang}/a.{ext}" for lang in ("en", "zh-Hans")
                                   for ext in ("m4a", "mp3", "vtt"))}
    info = probe_audio(root / "assets/mini/en/a.mp3")
    assert info.format == "mp3" and 38 < info.duration_s < 40


def test_the_bundled_demo_passes_quickly():
    manifest = find_manifest(REPO / "tours/chongqing-night")
    tour = parse_tour(read_manifest(manifest), str(manifest))
    started = time.perf_counter()
    files, issues = check_tour_files(tour, REPO, str(manifest))
    assert issues == [] and len(files) == 42
    assert time.perf_counter() - started < 3.0  # six scenes, 24 audio files, 12 subtitles


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height; its data is tiny (never allocated)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _nan_glb(path: Path) -> bytes:
    doc = load_asset(path)
    prim = doc.json["meshes"][0]["primitives"][0]
    view = doc.json["bufferViews"][doc.json["accessors"][prim["attributes"]["POSITION"]]
                                   ["bufferView"]]
    data = bytearray(doc.bin)
    struct.pack_into("<3f", data, int(view.get("byteOffset", 0)), *[float("nan")] * 3)
    return write_glb(Document(doc.json, bytes(data)))


def _bomb_glb(tmp: Path, width: int, height: int) -> bytes:
    return write_glb(load_asset(write_gltf(tmp / "bomb", _png_claiming(width, height))))


def _png_bytes() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


SCENE_CASES = {
    "truncated": (lambda glb, tmp: glb[: len(glb) // 2], "glb_truncated", "header says"),
    "empty": (lambda glb, tmp: b"", "file_empty", "empty"),
    "random bytes": (lambda glb, tmp: os.urandom(4096), "scene_format", "not a glTF scene"),
    "a PNG named .glb": (lambda glb, tmp: _png_bytes(), "scene_format", "is a PNG image"),
    "glTF JSON named .glb": (lambda glb, tmp: b'{"asset": {"version": "2.0"}}',
                             "scene_type_mismatch", "glTF JSON"),
    "NaN positions": (lambda glb, tmp: _nan_glb(tmp / "content" / SCENE), "position_not_finite",
                      "NaN"),
    "texture over the pixel cap": (lambda glb, tmp: _bomb_glb(tmp, 20000, 20000),
                                   "image_too_large", "20000x20000"),
    "texture over our cap, under Pillow's": (lambda glb, tmp: _bomb_glb(tmp, 10000, 10000),
                                             "image_too_large", "10000x10000"),
}


@pytest.mark.parametrize("case", list(SCENE_CASES))
def test_broken_scenes_are_errors_naming_the_file(root, tmp_path, case):
    make, code, words = SCENE_CASES[case]
    path = root / SCENE
    path.write_bytes(make(path.read_bytes(), tmp_path))
    issue = only_issue(root, SCENE_FIELD)
    assert issue.code == code
    assert issue.message.startswith(SCENE) and words in issue.message
    assert str(root) not in issue.message  # the file is named once, as the manifest names it


def test_a_texture_of_8192_px_is_not_an_error(root, tmp_path):
    """The build resizes large textures per tier; only the decode cap is refused."""
    (root / SCENE).write_bytes(_bomb_glb(tmp_path, 8192, 8192))
    assert check(root)[1] == []


def _with_source(root: Path, source: str):
    manifest = find_manifest(root / "tours/mini")
    tour = parse_tour(read_manifest(manifest), MANIFEST)
    stop = tour.stops[0]
    scene = dataclasses.replace(stop.scenes[0], source=source)
    return dataclasses.replace(tour, stops=(dataclasses.replace(stop, scenes=(scene,)),
                                            *tour.stops[1:]))


def test_a_gltf_scene_with_its_files_is_accepted(root):
    path = write_gltf(root / "assets/mini/g", _png_bytes())
    tour = _with_source(root, "assets/mini/g/scene.gltf")
    files, issues = check(root, tour)
    assert issues == [] and files["assets/mini/g/scene.gltf"] == path.resolve()
    assert {p.name for p in scene_dependencies(path)} == {"scene.bin", "scene-color.png"}


def test_a_gltf_missing_its_bin_names_it(root):
    path = write_gltf(root / "assets/mini/g", _png_bytes())
    (path.parent / "scene.bin").unlink()
    tour = _with_source(root, "assets/mini/g/scene.gltf")
    issue = only_issue(root, SCENE_FIELD, tour=tour)
    assert issue.code == "file_missing"
    assert issue.message.startswith("assets/mini/g/scene.gltf#/buffers/0/uri")
    assert "scene.bin" in issue.message
    assert scene_dependencies(path) == [path.parent / "scene-color.png"]


def test_scene_dependencies_skip_what_leaves_the_folder(tmp_path):
    path = tmp_path / "s.gltf"
    path.write_text(json.dumps({"asset": {"version": "2.0"}, "buffers": [
        {"uri": "../secret.bin", "byteLength": 4}, {"uri": "data:;base64,AAAA", "byteLength": 3},
        {"uri": "https://example.com/x.bin", "byteLength": 4}]}))
    (tmp_path.parent / "secret.bin").write_bytes(b"1234")
    assert scene_dependencies(path) == []
    path.write_bytes(b"\0garbage")
    assert scene_dependencies(path) == []


def _silent_mp3(path: Path) -> None:
    """The demo MP3's first frame alone, its Info header saying 0 frames: valid, 0 s long."""
    data = (NARRATION / "jiefangbei.mp3").read_bytes()
    first = bytearray(data[: data.find(data[:2], 1)])  # up to the next frame's sync
    struct.pack_into(">II", first, 13 + 8, 0, len(first))  # Info: frames 0, bytes
    path.write_bytes(bytes(first))


M4A_FIELD, MP3_FIELD = "/stops/0/narration/en/audio/0", "/stops/0/narration/en/audio/1"
AUDIO_CASES = {
    "a WAV named .mp3": ("a.mp3", MP3_FIELD, write_wav, "audio_format", "is a WAV file"),
    "an M4A named .mp3": ("a.mp3", MP3_FIELD,
                          lambda p: shutil.copyfile(NARRATION / "jiefangbei.m4a", p),
                          "audio_type_mismatch", "AAC audio in an MP4 (M4A) container"),
    "an MP3 named .m4a": ("a.m4a", M4A_FIELD,
                          lambda p: shutil.copyfile(NARRATION / "jiefangbei.mp3", p),
                          "audio_type_mismatch", "is MP3 audio but named .m4a"),
    "random bytes .m4a": ("a.m4a", M4A_FIELD, lambda p: p.write_bytes(os.urandom(8192)),
                          "audio_format", "not MP3 or AAC"),
    "a truncated .m4a": ("a.m4a", M4A_FIELD, lambda p: p.write_bytes(
        (NARRATION / "jiefangbei.m4a").read_bytes()[:60000]), "audio_truncated", "cut short"),
    "a truncated .mp3": ("a.mp3", MP3_FIELD, lambda p: p.write_bytes(
        (NARRATION / "jiefangbei.mp3").read_bytes()[:60000]), "audio_truncated", "cut short"),
    "an ID3 tag alone": ("a.mp3", MP3_FIELD, lambda p: p.write_bytes(b"ID3" + bytes(64)),
                         "audio_format", "no MPEG audio frames"),
    "an empty .mp3": ("a.mp3", MP3_FIELD, lambda p: p.write_bytes(b""), "file_empty", "empty"),
    "a zero-length .mp3": ("a.mp3", MP3_FIELD, _silent_mp3, "audio_empty", "0 seconds"),
}


@pytest.mark.parametrize("case", list(AUDIO_CASES))
def test_audio_is_recognised_by_its_bytes(root, case):
    name, field, make, code, words = AUDIO_CASES[case]
    make(root / "assets/mini/en" / name)
    issue = only_issue(root, field)
    assert issue.code == code
    assert issue.message.startswith(f"assets/mini/en/{name} ") and words in issue.message


def test_subtitles_past_the_end_of_the_audio(root):
    (root / "assets/mini/en/a.vtt").write_text(
        "WEBVTT\n\n00:00:00.000 --> 00:00:05.000\nHello.\n\n"
        "00:01:25.000 --> 00:01:30.500\nLong after the audio ended.\n")
    issue = only_issue(root, "/stops/0/narration/en/subtitles")
    assert issue.code == "subtitles_past_audio"
    # both files and both times; the shorter of the two audio files is named (m4a 39.016 s)
    assert "assets/mini/en/a.vtt" in issue.message and "assets/mini/en/a.m4a" in issue.message
    assert "01:30.500" in issue.message and "00:39.016" in issue.message
    # the same files serve stop mini-b: it gets its own issue, named by its id
    assert only_issue(root, "/stops/1/narration/en/subtitles", stop="mini-b")


def test_subtitles_a_little_past_the_audio_are_tolerated(root):
    (root / "assets/mini/en/a.vtt").write_text(
        "WEBVTT\n\n00:00:00.000 --> 00:00:39.400\nTo the very end.\n")
    assert check(root)[1] == []


def test_broken_subtitles_keep_their_webvtt_check(root):
    (root / "assets/mini/en/a.vtt").write_text("WEBVTT\n\n00:00:02.000 --> 00:00:01.000\nx\n")
    issue = only_issue(root, "/stops/0/narration/en/subtitles")
    assert issue.code == "subtitles_invalid" and "line 3" in issue.message


def test_a_missing_file_in_the_wrong_case_gets_a_suggestion(root):
    (root / SCENE).rename(root / "assets/mini/A.glb")
    issue = only_issue(root, SCENE_FIELD)
    assert issue.code == "file_missing" and issue.message == f"{SCENE} does not exist"
    assert "assets/mini/A.glb" in issue.hint
