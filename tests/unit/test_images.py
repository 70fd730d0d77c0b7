"""Unit tests for server.services.intake.images (A17.1 ID document sides, A14 frontal photo, A25).

Every image is generated here with Pillow or built byte by byte; there are no fixture
files. Bombs are hand-made PNG/JPEG/WebP headers so nothing large is ever allocated.
"""

from __future__ import annotations

import hashlib
import io
import random
import re
import struct
import warnings
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image, ImageCms, ImageFile
from PIL.PngImagePlugin import PngInfo

from server.domain.errors import InvalidInput
from server.services.intake.images import (
    CheckedImage,
    ImageKind,
    ImageLimits,
    check_image,
    inspect_image,
    remove_stored,
    sniff_format,
    store_image,
)

LIMITS = ImageLimits()
APP_ID = "0123456789abcdef0123456789abcdef"


# -- builders ---------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def noise(size: tuple[int, int], seed: int = 1) -> Image.Image:
    # Incompressible content, so a file cut in half is cut inside the pixel data.
    data = random.Random(seed).randbytes(size[0] * size[1] * 3)
    return Image.frombytes("RGB", size, data)


def quadrants(size: tuple[int, int]) -> Image.Image:
    """Red top-left quadrant on blue: shows which way an image was turned."""
    image = Image.new("RGB", size, (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, size[0] // 2, size[1] // 2))
    return image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type


def flat_png(width: int, height: int, *, depth: int = 8, colour: int = 2) -> bytes:
    """A valid all-zero PNG of any bit depth and colour type, built without Pillow
    allocating width×height (a palette image gets a one-colour palette)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    row = b"\x00" * (1 + (width * PNG_CHANNELS[colour] * depth + 7) // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row * 100) for _ in range(height // 100))
    idat += packer.compress(row * (height % 100)) + packer.flush()
    palette = png_chunk(b"PLTE", b"\x00\x00\x00") if colour == 3 else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + palette
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def bilevel_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG."""
    return flat_png(width, height, depth=1, colour=0)


def webp_vp8x_header(width: int, height: int) -> bytes:
    """The start of an extended WebP declaring a canvas of width×height."""
    payload = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little")
    payload += (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def jpeg_with_frame_size(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header (SOF0) is rewritten to width×height."""
    data = bytearray(encode(Image.new("RGB", (640, 480), "white"), "JPEG"))
    sof = data.index(b"\xff\xc0")
    # marker(2) length(2) precision(1) height(2) width(2)
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def jpeg_with_second_frame_header(width: int, height: int) -> bytes:
    """A 640×480 JPEG followed by a second SOF0 declaring width×height.

    Pillow keeps the size of the last frame header, so a check that stops at the
    first one would be fooled.
    """
    data = encode(Image.new("RGB", (640, 480), "white"), "JPEG")
    start = data.index(b"\xff\xc0")
    end = start + 2 + struct.unpack_from(">H", data, start + 2)[0]
    second = bytearray(data[start:end])
    struct.pack_into(">HH", second, 5, height, width)
    return data[:end] + bytes(second) + data[end:]


def refused(raw: bytes, limits: ImageLimits = LIMITS) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        check_image(raw, limits=limits)
    error = info.value
    assert error.details["field"] == "image"
    assert error.message and error.message_zh and error.message != error.message_zh
    return error


def decoded(result: CheckedImage) -> Image.Image:
    image = Image.open(io.BytesIO(result.data))
    image.load()
    return image


def near(actual: object, expected: tuple[int, int, int], tolerance: int = 12) -> bool:
    assert isinstance(actual, tuple)
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


# -- sniffing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "PNG"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "WEBP"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),  # RIFF but audio
        (b"GIF89a\x01\x00", None),
        (b"hello", None),
        (b"\x89PNG\r\n", None),  # signature cut short
        (b"", None),
    ],
)
def test_sniff_format_by_magic_bytes(head: bytes, expected: str | None) -> None:
    assert sniff_format(head) == expected


# -- accepted images --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("JPEG", {"quality": 95}),
        ("PNG", {}),
        ("WEBP", {"quality": 90}),
        ("WEBP", {"lossless": True}),
    ],
)
def test_valid_images_are_reencoded_as_jpeg(fmt: str, params: dict[str, object]) -> None:
    raw = encode(quadrants((800, 600)), fmt, **params)
    assert sniff_format(raw) == fmt

    result = check_image(raw, limits=LIMITS)

    assert result.source_format == fmt
    assert result.content_type == "image/jpeg"
    assert result.data.startswith(b"\xff\xd8\xff")
    assert result.sha256 == hashlib.sha256(result.data).hexdigest()
    assert (result.width, result.height) == (800, 600)
    out = decoded(result)
    assert out.format == "JPEG" and out.mode == "RGB" and out.size == (800, 600)
    assert near(out.getpixel((100, 100)), (255, 0, 0))
    assert near(out.getpixel((700, 500)), (0, 0, 255))


def test_result_is_deterministic() -> None:
    raw = encode(noise((400, 300)), "PNG")
    assert check_image(raw, limits=LIMITS) == check_image(raw, limits=LIMITS)


def test_jpeg_quality_comes_from_limits() -> None:
    raw = encode(noise((640, 480)), "PNG")
    low = check_image(raw, limits=ImageLimits(jpeg_quality=30))
    high = check_image(raw, limits=ImageLimits(jpeg_quality=90))
    assert len(low.data) < len(high.data) * 0.7


def test_phone_jpeg_with_mpf_index_is_a_jpeg_not_an_animation() -> None:
    # Phones append depth maps / gain maps as extra MPF frames; the first is the photo.
    raw = encode(
        Image.new("RGB", (640, 480), "red"),
        "MPO",
        save_all=True,
        append_images=[Image.new("RGB", (640, 480), "blue")],
    )
    assert Image.open(io.BytesIO(raw)).format == "MPO"

    result = check_image(raw, limits=LIMITS)

    assert result.source_format == "JPEG"
    assert near(decoded(result).getpixel((320, 240)), (255, 0, 0))


# -- refused by type or size ------------------------------------------------------------


def test_empty_refused() -> None:
    assert refused(b"").code == "image_empty"


def test_text_file_named_like_a_jpeg_refused() -> None:
    # The content decides; a name like "id.jpg" plays no part.
    error = refused(b"hello")
    assert error.code == "image_type_not_allowed"
    assert error.message == "Only JPEG, PNG or WebP images are accepted."
    assert error.message_zh == "仅支持 JPEG、PNG 或 WebP 格式的图片。"


def test_gif_refused_even_when_animated() -> None:
    frames = [Image.new("RGB", (400, 300), c) for c in ("red", "blue")]
    raw = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert refused(raw).code == "image_type_not_allowed"


def test_too_many_bytes_refused_before_decoding() -> None:
    raw = b"\xff\xd8\xff" + b"\x00" * LIMITS.max_bytes
    error = refused(raw)
    assert error.code == "image_too_large"
    assert "8 MB" in error.message and "8 MB" in error.message_zh


def test_byte_limit_is_inclusive_and_configurable() -> None:
    raw = encode(noise((400, 300)), "PNG")
    assert check_image(raw, limits=ImageLimits(max_bytes=len(raw))).source_format == "PNG"
    error = refused(raw, ImageLimits(max_bytes=len(raw) - 1))
    assert error.code == "image_too_large"


@pytest.mark.parametrize("size", [(319, 600), (800, 239), (100, 100)])
def test_too_small_refused(size: tuple[int, int]) -> None:
    error = refused(encode(Image.new("RGB", size, "white"), "PNG"))
    assert error.code == "image_too_small"
    assert "320×240" in error.message and "320×240" in error.message_zh


def test_minimum_size_is_exactly_allowed() -> None:
    result = check_image(encode(Image.new("RGB", (320, 240), "white"), "PNG"), limits=LIMITS)
    assert (result.width, result.height) == (320, 240)


def test_too_small_judged_on_the_upright_image() -> None:
    # Stored 400×300 but Orientation=6 means it is seen as 300×400: too narrow.
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    raw = encode(Image.new("RGB", (400, 300), "white"), "JPEG", exif=exif)
    assert refused(raw).code == "image_too_small"


def test_extreme_aspect_ratio_refused_when_downscaling_makes_it_too_small() -> None:
    raw = encode(Image.new("L", (12000, 300), 128), "PNG")
    assert refused(raw).code == "image_too_small"


# -- refused as corrupt -----------------------------------------------------------------


def test_png_header_followed_by_garbage_refused() -> None:
    raw = b"\x89PNG\r\n\x1a\n" + random.Random(2).randbytes(4096)
    assert refused(raw).code == "image_corrupt"


def test_truncated_jpeg_refused() -> None:
    raw = encode(noise((640, 480)), "JPEG", quality=90)
    check_image(raw, limits=LIMITS)  # the whole file is fine
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert refused(raw[: len(raw) // 2]).code == "image_corrupt"


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_truncated_png_and_webp_refused(fmt: str) -> None:
    raw = encode(noise((640, 480)), fmt)
    check_image(raw, limits=LIMITS)
    assert refused(raw[: len(raw) // 2]).code == "image_corrupt"


def test_jpeg_without_frame_header_refused() -> None:
    assert refused(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 64).code == "image_corrupt"


def test_pillow_warning_raised_as_error_means_corrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under an "error" warnings filter (this suite's), Pillow's warnings about damaged
    # metadata arrive as exceptions; they must become image_corrupt, not escape.
    def warn_on_exif(self: Image.Image) -> Image.Exif:
        warnings.warn("Corrupt EXIF data", UserWarning, stacklevel=1)
        return Image.Exif()

    monkeypatch.setattr(Image.Image, "getexif", warn_on_exif)
    raw = encode(Image.new("RGB", (400, 300), "white"), "JPEG")
    assert refused(raw).code == "image_corrupt"


def test_refuses_when_truncated_images_are_globally_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fail closed rather than accept grey-filled half uploads.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    raw = encode(Image.new("RGB", (400, 300), "white"), "PNG")
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        check_image(raw, limits=LIMITS)


# -- animation --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["WEBP", "PNG"])
def test_animated_webp_and_apng_refused(fmt: str) -> None:
    frames = [Image.new("RGB", (400, 300), c) for c in ("red", "blue")]
    raw = encode(frames[0], fmt, save_all=True, append_images=frames[1:])
    assert getattr(Image.open(io.BytesIO(raw)), "n_frames", 1) == 2
    error = refused(raw)
    assert error.code == "image_animated"


# -- decompression bombs ----------------------------------------------------------------


@pytest.fixture
def no_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse_load(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse_load)


@pytest.mark.usefixtures("no_pixel_decoding")
@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(bilevel_png(20_000, 20_000), id="png-400M"),
        # Between Pillow's warning and error thresholds: Pillow would only warn.
        pytest.param(bilevel_png(10_000, 10_000), id="png-100M"),
        pytest.param(webp_vp8x_header(10_000, 10_000), id="webp-100M"),
        pytest.param(webp_vp8x_header(16_384, 16_384), id="webp-268M"),
        pytest.param(jpeg_with_frame_size(10_000, 10_000), id="jpeg-100M"),
        pytest.param(jpeg_with_frame_size(65_535, 65_535), id="jpeg-4G"),
        pytest.param(jpeg_with_second_frame_header(10_000, 10_000), id="jpeg-second-sof"),
    ],
)
def test_bombs_refused_without_decoding_or_warning(raw: bytes) -> None:
    assert len(raw) < 200_000
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        error = refused(raw)
    assert error.code == "image_too_many_pixels"
    assert "40,000,000" in error.message and "40,000,000" in error.message_zh
    assert caught == []


def test_pixel_limit_is_ours_not_pillows() -> None:
    raw = encode(Image.new("RGB", (1200, 1000), "white"), "PNG")
    assert check_image(raw, limits=ImageLimits(max_pixels=1_200_000)).width == 1200
    assert refused(raw, ImageLimits(max_pixels=1_199_999)).code == "image_too_many_pixels"


@pytest.mark.usefixtures("no_pixel_decoding")
def test_tiny_file_of_6300_squared_pixels_refused_by_decoded_size() -> None:
    # The attack: 116 KB that Pillow turns into 159 MB (RGB takes 4 bytes a pixel),
    # under the pixel limit; four at once took a worker from 134 MB to 2.4 GB.
    raw = flat_png(6300, 6300)
    assert len(raw) < 200_000 and 6300 * 6300 <= LIMITS.max_pixels
    error = refused(raw)
    assert error.code == "image_too_large_decoded"
    assert error.details["decoded_bytes"] == 6300 * 6300 * 4
    assert error.details["max_decoded_bytes"] == LIMITS.max_decoded_bytes
    assert "6300×6300" in error.message and "6300×6300" in error.message_zh
    assert "100 MB" in error.message and "100 MB" in error.message_zh


@pytest.mark.usefixtures("no_pixel_decoding")
@pytest.mark.parametrize(
    ("depth", "colour"),
    [(16, 0), (8, 6), (16, 6), (8, 4)],
    ids=["grey-16-bit", "rgba", "rgba-16-bit", "grey-alpha"],
)
def test_same_pixels_refused_when_mode_takes_more_bytes(depth: int, colour: int) -> None:
    limits = ImageLimits(max_decoded_bytes=3000 * 2000)  # one byte a pixel
    assert refused(flat_png(3000, 2000, depth=depth, colour=colour), limits).code == (
        "image_too_large_decoded"
    )


def test_eight_bit_grey_of_the_same_pixels_is_accepted() -> None:
    limits = ImageLimits(max_decoded_bytes=3000 * 2000)
    assert check_image(flat_png(3000, 2000, depth=8, colour=0), limits=limits).width == 2560


@pytest.mark.parametrize(
    ("depth", "colour", "bytes_per_pixel"),
    [
        (1, 0, 1),
        (4, 0, 1),
        (8, 0, 1),
        (16, 0, 2),
        (8, 2, 4),
        (16, 2, 4),
        (4, 3, 1),
        (8, 3, 1),
        (8, 4, 4),
        (16, 4, 4),
        (8, 6, 4),
        (16, 6, 4),
    ],
)
def test_png_header_says_the_mode_pillow_decodes_into(
    depth: int, colour: int, bytes_per_pixel: int
) -> None:
    raw = flat_png(400, 300, depth=depth, colour=colour)
    header = inspect_image(raw, limits=LIMITS)
    with Image.open(io.BytesIO(raw)) as image:
        assert header.mode == image.mode
        image.load()
        assert header.decoded_bytes == 400 * 300 * bytes_per_pixel
    assert header.working_bytes > header.decoded_bytes


@pytest.mark.parametrize(
    ("image", "fmt", "params"),
    [
        (Image.new("L", (400, 300)), "JPEG", {}),
        (Image.new("RGB", (400, 300)), "JPEG", {}),
        (Image.new("CMYK", (400, 300)), "JPEG", {}),
        (Image.new("RGB", (400, 300)), "WEBP", {}),
        (Image.new("RGBA", (400, 300)), "WEBP", {"lossless": True}),
    ],
    ids=["jpeg-grey", "jpeg-rgb", "jpeg-cmyk", "webp-rgb", "webp-rgba"],
)
def test_jpeg_and_webp_decoded_size_from_the_header(
    image: Image.Image, fmt: str, params: dict[str, object]
) -> None:
    raw = encode(image, fmt, **params)
    header = inspect_image(raw, limits=LIMITS)
    with Image.open(io.BytesIO(raw)) as opened:
        opened.load()
        # Pillow keeps grey in 1 byte a pixel, every colour mode in 4 (RGB padded).
        pillow_bytes = opened.width * opened.height * (1 if opened.mode == "L" else 4)
    assert header.decoded_bytes == pillow_bytes


def test_progressive_jpeg_counts_the_decoders_coefficients() -> None:
    baseline = inspect_image(encode(noise((400, 300)), "JPEG"), limits=LIMITS)
    progressive = encode(noise((400, 300)), "JPEG", progressive=True, subsampling="4:2:0")
    header = inspect_image(progressive, limits=LIMITS)
    assert baseline.decoder_bytes == 0
    # 4:2:0: 1.5 samples a pixel, 2 bytes a coefficient.
    assert header.decoder_bytes == 400 * 300 * 3


def test_limits_above_pillows_bomb_threshold_rejected() -> None:
    assert Image.MAX_IMAGE_PIXELS is not None
    with pytest.raises(ValueError, match="max_pixels"):
        ImageLimits(max_pixels=Image.MAX_IMAGE_PIXELS + 1)
    with pytest.raises(ValueError, match="jpeg_quality"):
        ImageLimits(jpeg_quality=100)


# -- orientation, metadata, colour ------------------------------------------------------


def test_exif_orientation_applied_and_all_metadata_stripped() -> None:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # display rotated 90° clockwise
    exif[ExifTags.Base.Make] = "TestPhone"
    exif[ExifTags.IFD.GPSInfo] = {
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (39.0, 54.0, 27.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (116.0, 23.0, 5.0),
    }
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    raw = encode(
        quadrants((640, 480)),
        "JPEG",
        exif=exif,
        icc_profile=srgb,
        comment=b"investor-secret-comment",
        xmp=b"<x:xmpmeta>investor-secret-xmp</x:xmpmeta>",
    )
    source = Image.open(io.BytesIO(raw))
    assert source.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the input really has GPS

    result = check_image(raw, limits=LIMITS)

    out = decoded(result)
    assert (result.width, result.height) == out.size == (480, 640)
    # Turned clockwise: the red top-left quadrant is now top-right.
    assert near(out.getpixel((360, 160)), (255, 0, 0))
    assert near(out.getpixel((120, 160)), (0, 0, 255))
    assert len(out.getexif()) == 0
    assert not {"exif", "icc_profile", "xmp", "comment"} & out.info.keys()
    for needle in (b"Exif", b"TestPhone", b"ICC_PROFILE", b"investor-secret", b"xmpmeta"):
        assert needle not in result.data


def test_png_text_comment_not_carried_into_jpeg() -> None:
    # Pillow's JPEG writer copies info["comment"] by default; a PNG text chunk sets it.
    meta = PngInfo()
    meta.add_text("comment", "investor-secret-comment")
    raw = encode(Image.new("RGB", (400, 300), "white"), "PNG", pnginfo=meta)
    assert Image.open(io.BytesIO(raw)).info["comment"] == "investor-secret-comment"

    result = check_image(raw, limits=LIMITS)

    assert b"investor-secret" not in result.data
    assert "comment" not in decoded(result).info


def test_png_alpha_flattened_on_white() -> None:
    image = Image.new("RGBA", (400, 300), (0, 0, 0, 0))  # transparent black
    image.paste((255, 0, 0, 255), (200, 0, 400, 300))  # opaque red right half
    result = check_image(encode(image, "PNG"), limits=LIMITS)
    out = decoded(result)
    assert out.mode == "RGB"
    assert near(out.getpixel((50, 150)), (255, 255, 255))
    assert near(out.getpixel((350, 150)), (255, 0, 0))


def test_palette_transparency_flattened_without_warning() -> None:
    # P images with byte transparency make Pillow warn on a direct convert("RGB").
    image = Image.new("P", (400, 300), 0)
    image.putpalette([0, 0, 0, 0, 128, 0] + [0] * 762)
    image.paste(1, (200, 0, 400, 300))
    image.info["transparency"] = 0
    raw = encode(image, "PNG")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = decoded(check_image(raw, limits=LIMITS))
    assert caught == []
    assert near(out.getpixel((50, 150)), (255, 255, 255))
    assert near(out.getpixel((350, 150)), (0, 128, 0))


def test_sixteen_bit_grey_png_is_scaled_not_clipped() -> None:
    raw = encode(Image.new("I;16", (400, 300), 0x8080), "PNG")
    out = decoded(check_image(raw, limits=LIMITS))
    assert near(out.getpixel((200, 150)), (128, 128, 128), tolerance=2)


# -- downscaling ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [((4000, 3000), (2560, 1920)), ((3000, 4000), (1920, 2560)), ((2560, 1000), (2560, 1000))],
)
def test_downscaled_to_max_edge(size: tuple[int, int], expected: tuple[int, int]) -> None:
    raw = encode(quadrants(size), "JPEG")
    result = check_image(raw, limits=LIMITS)
    out = decoded(result)
    assert (result.width, result.height) == out.size == expected
    assert near(out.getpixel((expected[0] // 4, expected[1] // 4)), (255, 0, 0))


# -- robustness -------------------------------------------------------------------------

_SEEDS = {fmt: encode(noise((48, 40), seed=3), fmt) for fmt in ("JPEG", "PNG", "WEBP")}
_TINY = ImageLimits(min_width=1, min_height=1, max_edge=64)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fmt=st.sampled_from(sorted(_SEEDS)),
    cut=st.integers(min_value=1, max_value=10_000),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
)
def test_damaged_files_fail_only_with_invalid_input(
    fmt: str, cut: int, edits: list[tuple[int, int]]
) -> None:
    data = bytearray(_SEEDS[fmt][:cut])
    for position, value in edits:
        data[position % len(data)] = value
    try:
        result = check_image(bytes(data), limits=_TINY)
    except InvalidInput as error:
        assert error.code.startswith("image_")
    else:
        assert decoded(result).format == "JPEG"


# -- storage ----------------------------------------------------------------------------


@pytest.fixture
def checked() -> CheckedImage:
    return check_image(encode(noise((400, 300)), "PNG"), limits=LIMITS)


def test_store_image_writes_atomically_under_the_application(
    tmp_path: Path, checked: CheckedImage
) -> None:
    relative = store_image(tmp_path, application_id=APP_ID, kind=ImageKind.ID_BACK, image=checked)

    assert not relative.is_absolute()
    assert re.fullmatch(rf"applications/{APP_ID}/id_back-[0-9a-f]{{32}}\.jpg", relative.as_posix())
    stored = tmp_path / relative
    assert stored.read_bytes() == checked.data
    assert stored.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "applications").stat().st_mode & 0o777 == 0o750
    assert stored.parent.stat().st_mode & 0o777 == 0o750
    assert [p.name for p in stored.parent.iterdir()] == [stored.name]  # no temp file left


def test_store_image_names_are_unique(tmp_path: Path, checked: CheckedImage) -> None:
    paths = {
        store_image(tmp_path, application_id=APP_ID, kind=kind, image=checked)
        for kind in (ImageKind.FRONTAL_PHOTO, ImageKind.FRONTAL_PHOTO, ImageKind.ID_FRONT)
    }
    assert len(paths) == 3


@pytest.mark.parametrize(
    "application_id",
    ["../../etc", APP_ID.upper(), APP_ID + "\n", APP_ID[:-1], APP_ID + "0", "", "/" + APP_ID[1:]],
)
def test_store_image_refuses_bad_application_id(
    tmp_path: Path, checked: CheckedImage, application_id: str
) -> None:
    with pytest.raises(ValueError, match="application_id"):
        store_image(tmp_path, application_id=application_id, kind=ImageKind.ID_FRONT, image=checked)
    assert list(tmp_path.iterdir()) == []


def test_store_image_refuses_symlink_out_of_root(tmp_path: Path, checked: CheckedImage) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "applications").symlink_to(outside)
    with pytest.raises(ValueError, match="escapes"):
        store_image(root, application_id=APP_ID, kind=ImageKind.ID_FRONT, image=checked)
    assert list(outside.iterdir()) == []


def test_remove_stored_deletes_and_tolerates_missing(tmp_path: Path, checked: CheckedImage) -> None:
    relative = store_image(tmp_path, application_id=APP_ID, kind=ImageKind.ID_FRONT, image=checked)
    remove_stored(tmp_path, relative.as_posix())
    assert not (tmp_path / relative).exists()
    remove_stored(tmp_path, relative.as_posix())  # already gone: no error


@pytest.mark.parametrize(
    "relative",
    [
        "../../etc/passwd",
        "/etc/passwd",
        f"applications/{APP_ID}/../../../outside.jpg",
        f"applications/{APP_ID}/notes.txt",
        "applications",
        "",
    ],
)
def test_remove_stored_refuses_paths_it_did_not_generate(tmp_path: Path, relative: str) -> None:
    victim = tmp_path / "outside.jpg"
    victim.write_bytes(b"keep")
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ValueError):
        remove_stored(root, relative)
    assert victim.exists()


def test_remove_stored_refuses_symlink_out_of_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "applications").mkdir(parents=True)
    outside.mkdir()
    (root / "applications" / APP_ID).symlink_to(outside)
    name = f"id_front-{'a' * 32}.jpg"
    (outside / name).write_bytes(b"keep")
    with pytest.raises(ValueError, match="escapes"):
        remove_stored(root, f"applications/{APP_ID}/{name}")
    assert (outside / name).exists()
