"""The GLB reader refuses malformed and hostile files with a stable code, never a crash."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import corpus_file, tiny_glb

from tourserver.errors import TourError
from tourserver.gltf.document import ChunkWriter, GltfInvalid, parse_glb, write_glb


def glb(doc: dict, bin_chunk: bytes = b"", *, total: int | None = None) -> bytes:
    j = json.dumps(doc).encode()
    j += b" " * ((4 - len(j) % 4) % 4)
    body = struct.pack("<II", len(j), 0x4E4F534A) + j
    if bin_chunk:
        b = bin_chunk + b"\0" * ((4 - len(bin_chunk) % 4) % 4)
        body += struct.pack("<II", len(b), 0x004E4942) + b
    length = 12 + len(body) if total is None else total
    return struct.pack("<III", 0x46546C67, 2, length) + body


ASSET = {"asset": {"version": "2.0"}}


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "glb_truncated"),
        (b"glTF", "glb_truncated"),
        (b"PK\x03\x04" + bytes(40), "glb_bad_magic"),
        (struct.pack("<III", 0x46546C67, 1, 20) + bytes(8), "glb_version"),
        (glb(ASSET, total=10_000), "glb_truncated"),
        (glb(ASSET)[:-3] + b"", "glb_truncated"),
        (struct.pack("<III", 0x46546C67, 2, 28) + struct.pack("<II", 2**31, 0x4E4F534A)
         + bytes(8), "glb_truncated"),
        (struct.pack("<III", 0x46546C67, 2, 24) + struct.pack("<II", 4, 0x004E4942) + bytes(4),
         "glb_no_json"),
        (struct.pack("<III", 0x46546C67, 2, 24) + struct.pack("<II", 4, 0x4E4F534A) + b"{{{{",
         "gltf_json"),
        (glb({"nope": 1}), "gltf_json"),
        (glb({**ASSET, "buffers": [{"uri": "../../etc/passwd", "byteLength": 4}]}),
         "gltf_external_uri"),
        (glb({**ASSET, "images": [{"uri": "file:///etc/passwd"}]}), "gltf_external_uri"),
        (glb({**ASSET, "buffers": [{"byteLength": 1 << 40}]}, b"1234"), "glb_truncated"),
    ],
)
def test_malformed_glb_gets_a_stable_code(data, code):
    with pytest.raises(GltfInvalid) as info:
        parse_glb(data, "bad.glb")
    assert info.value.code == code
    assert "bad.glb" in info.value.message


def test_accessor_past_its_buffer_view_is_refused():
    doc_json = {**ASSET, "buffers": [{"byteLength": 12}],
                "bufferViews": [{"buffer": 0, "byteLength": 12}],
                "accessors": [{"bufferView": 0, "componentType": 5126, "count": 1000,
                               "type": "VEC3"}]}
    doc = parse_glb(glb(doc_json, bytes(12)))
    with pytest.raises(GltfInvalid) as info:
        doc.read_accessor(0)
    assert info.value.code == "accessor_out_of_range" and info.value.field == "/accessors/0"


def test_buffer_view_past_the_buffer_is_refused():
    doc_json = {**ASSET, "buffers": [{"byteLength": 12}],
                "bufferViews": [{"buffer": 0, "byteOffset": 8, "byteLength": 4096}]}
    doc = parse_glb(glb(doc_json, bytes(12)))
    with pytest.raises(GltfInvalid, match="past"):
        doc.buffer_view_bytes(0)


def test_round_trip_keeps_json_and_data(tmp_path):
    path = tmp_path / "a.glb"
    tiny_glb(path)
    doc = parse_glb(path.read_bytes())
    again = parse_glb(write_glb(doc))
    assert again.json == doc.json
    assert (again.read_accessor(0) == doc.read_accessor(0)).all()


def test_corpus_fox_round_trips_with_animations_and_skin():
    doc = parse_glb(corpus_file("Fox/Fox.glb").read_bytes())
    again = parse_glb(write_glb(doc))
    assert len(again.json["animations"]) == 3 and len(again.json["skins"]) == 1
    assert [n.get("name") for n in again.json["nodes"]] == [n.get("name")
                                                           for n in doc.json["nodes"]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=256), st.integers(min_value=0, max_value=200))
def test_fuzzed_bytes_never_crash_the_reader(noise, cut):
    """Random bytes, and a real GLB with bytes flipped or cut: only GltfInvalid may escape."""
    base = glb({**ASSET, "buffers": [{"byteLength": 16}],
                "bufferViews": [{"buffer": 0, "byteLength": 16}],
                "accessors": [{"bufferView": 0, "componentType": 5126, "count": 1,
                               "type": "VEC4"}]}, bytes(16))
    for data in (noise, base[:cut] + noise + base[cut + len(noise):], base[: max(cut, 12)]):
        try:
            doc = parse_glb(data)
            for i in range(len(doc.json.get("accessors", []))):
                doc.read_accessor(i)
        except TourError:
            pass
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            # A mangled JSON chunk may hold wrong types; those must become TourErrors too.
            pytest.fail(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize(
    ("nodes", "code"),
    [
        ([{"children": [1]}, {"children": [0]}], "gltf_node_cycle"),
        ([{"children": [0]}], "gltf_node_cycle"),
        ([{"children": [2]}, {"children": [2]}, {}], "gltf_node_cycle"),
        ([{"children": [5]}], "gltf_bad_index"),
        ([{"mesh": 3}], "gltf_bad_index"),
        ([{"children": ["x"]}], "gltf_schema"),
    ],
)
def test_node_tree_problems(nodes, code):
    with pytest.raises(GltfInvalid) as info:
        parse_glb(glb({**ASSET, "nodes": nodes}), "n.glb")
    assert info.value.code == code


def test_long_node_chain_is_checked_quickly():
    nodes = [{"children": [i + 1]} for i in range(50_000)] + [{}]
    parse_glb(glb({**ASSET, "nodes": nodes}))


def test_chunk_writer_aligns_each_block_and_pads_with_zeros():
    out = ChunkWriter(b"abc")
    assert out.append(b"12345") == 4  # after "abc" + one zero
    assert out.append(b"x", align=8) == 16
    assert out.append(b"") == 20
    assert out.bytes() == b"abc\0" + b"12345" + b"\0" * 7 + b"x" + b"\0" * 3
