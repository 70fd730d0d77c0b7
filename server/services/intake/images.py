"""Investor-uploaded images: validation, normalisation and storage (A17.1, A14, A25).

A17.1 needs both sides of the ID document, A14 a frontal head photo. Uploads are
untrusted: the format is decided by content (never by file name), the declared pixel
count and the bytes the decoded image will take are checked on the header before
Pillow allocates anything (image_header.py), the whole file is decoded, and what is
kept is a fresh JPEG re-encoded from pixels only, so no metadata (EXIF GPS, camera
serials, ICC, XMP, comments: A25 personal data) survives. How many decodes run at once
is bounded by memory in decode_budget.py.

Nothing here logs image content or metadata.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import io
import os
import re
import struct
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import NoReturn
from uuid import uuid4

from PIL import Image, ImageFile, ImageOps

from server.domain.errors import InvalidInput
from server.services.intake.image_header import (
    BYTES_PER_PIXEL,
    ImageHeader,
    read_header,
    sniff_format,
)

__all__ = [
    "CheckedImage",
    "ImageHeader",
    "ImageKind",
    "ImageLimits",
    "check_image",
    "inspect_image",
    "remove_stored",
    "sniff_format",
    "store_image",
]


class ImageKind(StrEnum):
    ID_FRONT = "id_front"  # A17.1
    ID_BACK = "id_back"  # A17.1
    FRONTAL_PHOTO = "frontal_photo"  # A14


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 8 * 1024 * 1024
    min_width: int = 320
    min_height: int = 240
    max_pixels: int = 40_000_000
    # What the pixel count costs: bytes of the decoded image in memory (width × height ×
    # bytes per pixel of its mode, ImageHeader.decoded_bytes). 100 MiB holds a
    # 24-megapixel colour photo (6000×4000 × 4 bytes); 6300×6300 in colour is refused.
    max_decoded_bytes: int = 100 * 1024 * 1024
    jpeg_quality: int = 90
    # Longer edge of the stored image; larger uploads are downscaled proportionally.
    max_edge: int = 2560

    def __post_init__(self) -> None:
        if (
            min(
                self.max_bytes,
                self.min_width,
                self.min_height,
                self.max_pixels,
                self.max_decoded_bytes,
            )
            < 1
        ):
            raise ValueError("image limits must be positive")
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError("jpeg_quality must be between 1 and 95")
        if self.max_edge < max(self.min_width, self.min_height):
            raise ValueError("max_edge must not be below the minimum size")
        # Our own check runs first; above Pillow's threshold Pillow would warn or
        # raise on images we mean to accept.
        pillow_limit = Image.MAX_IMAGE_PIXELS
        if pillow_limit is not None and self.max_pixels > pillow_limit:
            raise ValueError(f"max_pixels must not exceed Pillow's limit ({pillow_limit})")


@dataclass(frozen=True)
class CheckedImage:
    data: bytes  # the re-encoded JPEG
    sha256: str  # hex digest of data
    width: int
    height: int
    source_format: str  # "JPEG" | "PNG" | "WEBP"
    content_type: str = "image/jpeg"


# Decoded formats acceptable for each sniffed one. Phone cameras write JPEGs with an
# MPF index (depth map, HDR gain map) that Pillow reports as "MPO"; its first frame
# is the photo itself.
_DECODED_AS = {"JPEG": ("JPEG", "MPO"), "PNG": ("PNG",), "WEBP": ("WEBP",)}

# What Pillow's plugins raise on malformed input. Warning is here because under an
# "error" warnings filter (the test suite's) Pillow's warnings about corrupt EXIF or
# a malformed MPO index arrive as exceptions.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    TypeError,
    struct.error,
    zlib.error,
    Warning,
)

_APPLICATION_ID = re.compile(r"[0-9a-f]{32}")
_KINDS = "|".join(re.escape(k.value) for k in ImageKind)
_STORED_NAME = re.compile(rf"applications/[0-9a-f]{{32}}/(?:{_KINDS})-[0-9a-f]{{32}}\.jpg")


def inspect_image(raw: bytes, *, limits: ImageLimits) -> ImageHeader:
    """Check an upload's size, format and header against the limits, decoding nothing.

    Cheap (header bytes only, no Pillow): what it returns says what decoding will cost.
    Raises InvalidInput with a stable code.
    """
    if not raw:
        _refuse("image_empty", "The image is empty.", "图片为空。")
    if len(raw) > limits.max_bytes:
        mb = f"{limits.max_bytes / (1024 * 1024):g}"
        _refuse(
            "image_too_large",
            f"The image must not be larger than {mb} MB.",
            f"图片大小不能超过 {mb} MB。",
        )
    fmt = sniff_format(raw[:16])
    if fmt is None:
        _refuse(
            "image_type_not_allowed",
            "Only JPEG, PNG or WebP images are accepted.",
            "仅支持 JPEG、PNG 或 WebP 格式的图片。",
        )
    header = read_header(raw, fmt)
    if header is None:
        _corrupt()
    # Checked on the header, before Pillow sees the file: Pillow's own bomb check only
    # warns below twice its limit, and its WebP decoder allocates the canvas on open.
    _check_decoded(header, limits)
    return header


def check_image(raw: bytes, *, limits: ImageLimits) -> CheckedImage:
    """Validate an upload and re-encode it as a metadata-free upright JPEG.

    Pure CPU work taking up to ``inspect_image(raw).working_bytes`` of memory: callers
    run it in a thread, within a DecodeBudget. Raises InvalidInput with a stable code.
    Memory the decode freed is handed back to the system before it returns.
    """
    try:
        return _check_image(raw, limits)
    finally:
        _return_freed_memory()


def _check_image(raw: bytes, limits: ImageLimits) -> CheckedImage:
    # Fail closed: with this Pillow global set, truncated files decode "successfully"
    # with grey fill, and a half-uploaded ID photo would be accepted (A17.1).
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must be False")
    header = inspect_image(raw, limits=limits)
    fmt = header.format
    try:
        source = Image.open(io.BytesIO(raw), formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        _too_many_pixels(limits)
    except _DECODE_ERRORS as exc:
        raise _corrupt_error() from exc
    # Closing frees the decoded pixels; every larger copy is made and dropped inside.
    with source:
        if source.format not in _DECODED_AS[fmt]:
            _corrupt()
        if source.mode not in BYTES_PER_PIXEL:
            _corrupt()
        opened = ImageHeader(fmt, source.width, source.height, source.mode)
        _check_decoded(opened, limits)
        if opened.decoded_bytes > header.decoded_bytes:
            # Pillow would decode more than the header said (and the budget reserved).
            _corrupt()
        if source.format != "MPO" and getattr(source, "n_frames", 1) > 1:
            _refuse(
                "image_animated",
                "Animated images are not accepted; upload a single photo.",
                "不接受动态图片，请上传单张照片。",
            )
        try:
            # Full decode: a truncated or corrupt file fails here, not later.
            source.load()
            # A14: a phone photo must stand upright, so apply EXIF orientation before
            # the metadata carrying it is dropped. In place: no second full-size copy.
            ImageOps.exif_transpose(source, in_place=True)
            _check_min_size(source.width, source.height, limits)
            small = _downscale(_to_rgb(source), limits.max_edge)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            _too_many_pixels(limits)
        except _DECODE_ERRORS as exc:
            raise _corrupt_error() from exc
        # Extreme aspect ratios can fall below the minimum once downscaled.
        _check_min_size(small.width, small.height, limits)
        # A25: rebuild from pixels alone. Pillow copies some metadata from ``info`` when
        # saving (e.g. a PNG "comment" text chunk becomes a JPEG comment).
        clean = Image.new("RGB", small.size)
        clean.paste(small)
        del small  # may be the source itself, closed on leaving this block

    out = io.BytesIO()
    clean.save(out, format="JPEG", quality=limits.jpeg_quality, optimize=True)
    data = out.getvalue()
    return CheckedImage(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        width=clean.width,
        height=clean.height,
        source_format=fmt,
    )


def store_image(root: Path, *, application_id: str, kind: ImageKind, image: CheckedImage) -> Path:
    """Write a checked image atomically; return its path relative to ``root``.

    File names are generated here, never taken from the upload.
    """
    if not _APPLICATION_ID.fullmatch(application_id):
        # Defence against path traversal ("../../etc") through the id.
        raise ValueError("application_id must be 32 lowercase hex digits")
    kind = ImageKind(kind)
    base = root.resolve()
    directory = base / "applications" / application_id
    for level in (base, base / "applications", directory):
        # Checked level by level, before creating anything below a symlink that
        # leads outside root.
        if not level.resolve().is_relative_to(base):
            raise ValueError("image path escapes the storage root")
        _make_private_dir(level)
    target = directory / f"{kind.value}-{uuid4().hex}.jpg"
    if not target.resolve().is_relative_to(base):
        raise ValueError("image path escapes the storage root")

    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=".upload-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o640)
            fh.write(image.data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
    return target.relative_to(base)


def remove_stored(root: Path, relative: str) -> None:
    """Delete a stored image, e.g. when the transaction that referenced it failed.

    Only names that ``store_image`` generates are accepted; a missing file is fine.
    """
    if not _STORED_NAME.fullmatch(relative):
        raise ValueError("not a stored image path")
    base = root.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base / "applications"):
        raise ValueError("image path escapes the storage root")
    path.unlink(missing_ok=True)


# -- helpers -------------------------------------------------------------------------


def _check_decoded(header: ImageHeader, limits: ImageLimits) -> None:
    if header.pixels > limits.max_pixels:
        _too_many_pixels(limits)
    if header.decoded_bytes > limits.max_decoded_bytes:
        mb = f"{limits.max_decoded_bytes / (1024 * 1024):g}"
        decoded = f"{header.decoded_bytes / (1024 * 1024):.0f}"
        raise InvalidInput(
            "image_too_large_decoded",
            f"The image is too large once decoded ({header.width}×{header.height} pixels "
            f"take {decoded} MB; at most {mb} MB). Please upload a smaller photo.",
            f"图片解码后过大（{header.width}×{header.height} 像素需占用 {decoded} MB，"
            f"最多 {mb} MB），请上传尺寸较小的照片。",
            details={
                "field": "image",
                "decoded_bytes": header.decoded_bytes,
                "max_decoded_bytes": limits.max_decoded_bytes,
            },
        )


def _check_min_size(width: int, height: int, limits: ImageLimits) -> None:
    if width < limits.min_width or height < limits.min_height:
        _refuse(
            "image_too_small",
            f"The image must be at least {limits.min_width}×{limits.min_height} pixels.",
            f"图片尺寸不能小于 {limits.min_width}×{limits.min_height} 像素。",
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    """The image as RGB on white; an RGB image itself, not a copy (memory)."""
    if image.mode.startswith("I"):
        # 16-bit greyscale PNG: scale to 8 bits; a plain convert clips it to white.
        image = image.convert("I").point(lambda v: v / 256).convert("L")
    if "A" in image.getbands() or "transparency" in image.info:
        # Flatten on white; going through RGBA also avoids Pillow's warning for
        # palette images with byte transparency.
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba)
        return flat
    return image if image.mode == "RGB" else image.convert("RGB")


def _downscale(image: Image.Image, max_edge: int) -> Image.Image:
    longest = max(image.size)
    if longest <= max_edge:
        return image
    scale = max_edge / longest
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None
    return trim


def _return_freed_memory() -> None:
    # glibc keeps freed blocks in its arenas: after its first free of a large block it
    # raises the mmap threshold to that size, so Pillow's 16 MB blocks then come from
    # (and return to) the heap, and a decoding thread's arena keeps them. Without this
    # a burst of large uploads left the process hundreds of MB larger for good.
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _make_private_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o750)
    except FileExistsError:
        return
    # mkdir's mode is filtered by the umask; set it exactly on what we created.
    path.chmod(0o750)


def _fsync_dir(path: Path) -> None:
    # Makes the rename durable: the database will point at this name.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _refuse(code: str, message: str, message_zh: str) -> NoReturn:
    raise InvalidInput(code, message, message_zh, details={"field": "image"})


def _corrupt_error() -> InvalidInput:
    return InvalidInput(
        "image_corrupt",
        "The image file is damaged or incomplete; please upload it again.",
        "图片文件已损坏或不完整，请重新上传。",
        details={"field": "image"},
    )


def _corrupt() -> NoReturn:
    raise _corrupt_error()


def _too_many_pixels(limits: ImageLimits) -> NoReturn:
    _refuse(
        "image_too_many_pixels",
        f"The image has too many pixels (at most {limits.max_pixels:,}).",
        f"图片像素过多（最多 {limits.max_pixels:,} 像素）。",
    )
