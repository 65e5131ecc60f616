"""Content-addressed, immutable file store: each file is named by its SHA-256.

Writes are atomic (temporary file in the same folder, fsync, rename), so a crash never
leaves a half-written blob under a real name, and an existing blob is never rewritten.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tourserver.files import atomic_write

# Explicit MIME types: the platform table (and aiohttp's) sends .glb as octet-stream.
MIME_TYPES = {
    "glb": "model/gltf-binary",
    "gltf": "model/gltf+json",
    "bin": "application/octet-stream",
    "ktx2": "image/ktx2",
    "webp": "image/webp",
    "png": "image/png",
    "jpg": "image/jpeg",
    "m4a": "audio/mp4",
    "mp3": "audio/mpeg",
    "vtt": "text/vtt; charset=utf-8",
    "json": "application/json",
}
EXTENSIONS = {"jpeg": "jpg"}  # one canonical extension per type


@dataclass(frozen=True)
class BlobRef:
    sha256: str
    ext: str
    bytes: int

    @property
    def name(self) -> str:
        return f"{self.sha256}.{self.ext}"

    @property
    def mime(self) -> str:
        return MIME_TYPES[self.ext]

    @property
    def url(self) -> str:
        return f"/c/{self.name}"

    def to_json(self) -> dict:
        return {"sha256": self.sha256, "ext": self.ext, "bytes": self.bytes}

    @classmethod
    def from_json(cls, data: dict) -> BlobRef:
        return cls(data["sha256"], data["ext"], int(data["bytes"]))


def canonical_ext(suffix: str) -> str:
    ext = suffix.lower().lstrip(".")
    ext = EXTENSIONS.get(ext, ext)
    if ext not in MIME_TYPES:
        raise ValueError(f"unsupported file type .{ext}")
    return ext


class BlobStore:
    def __init__(self, root: Path):
        self.root = root

    def path_for(self, ref: BlobRef) -> Path:
        return self.root / ref.sha256[:2] / ref.name

    def has(self, ref: BlobRef) -> bool:
        path = self.path_for(ref)
        return path.is_file() and path.stat().st_size == ref.bytes

    def put(self, data: bytes, ext: str) -> BlobRef:
        ref = BlobRef(hashlib.sha256(data).hexdigest(), canonical_ext(ext), len(data))
        if not self.has(ref):
            atomic_write(self.path_for(ref), data)
        return ref

    def put_file(self, path: Path) -> BlobRef:
        return self.put(path.read_bytes(), path.suffix)
