"""What an upload's header says it will cost to decode, read without Pillow.

Uploads are untrusted, and the memory an image takes decoded has nothing to do with its
file size: a 116 KB PNG can declare 6300×6300 pixels. So the size, the pixel mode
Pillow will decode into and the decoder's own buffers are read from the header bytes
here, before Pillow sees the file (its WebP plugin allocates the canvas on open).
Pure: no I/O, no Pillow.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Bytes a pixel takes in Pillow's memory for each mode it decodes our formats into.
# Pillow pads RGB to 4 bytes and reduces 16-bit colour PNGs to 8 bits per channel on
# decode; 16-bit grey stays 2 bytes ("I;16"); 1-bit images are unpacked to a byte.
BYTES_PER_PIXEL = {
    "1": 1,
    "L": 1,
    "P": 1,
    "I;16": 2,
    "LA": 4,
    "RGB": 4,
    "RGBA": 4,
    "CMYK": 4,
}

# Peak bytes a pixel takes while check_image turns a decoded image of each mode into
# an upright RGB one: the decoded image, plus what is held with it at the worst moment:
# an RGB copy (or the rotated copy of an EXIF turn) and the downscale's first pass;
# flattening transparency holds an RGBA copy and the white background; 16-bit grey
# two 32-bit intermediates. Checked against ru_maxrss for each mode at 6000×4000
# (docs/intake.md, "Resource limits").
WORKING_BYTES_PER_PIXEL = {
    "1": 1 + 4 + 4,
    "L": 1 + 4 + 4,
    "P": 1 + 4 + 4,
    "I;16": 2 + 4 + 4,
    "LA": 4 + 4 + 4,
    "RGB": 4 + 4,
    "RGBA": 4 + 4 + 4,
    "CMYK": 4 + 4 + 4,
}

# Pillow's PNG modes by (bit depth, colour type): PngImagePlugin._MODES.
_PNG_MODES = {
    (1, 0): "1",
    (2, 0): "L",
    (4, 0): "L",
    (8, 0): "L",
    (16, 0): "I;16",
    (8, 2): "RGB",
    (16, 2): "RGB",
    (1, 3): "P",
    (2, 3): "P",
    (4, 3): "P",
    (8, 3): "P",
    (8, 4): "LA",
    (16, 4): "RGBA",
    (8, 6): "RGBA",
    (16, 6): "RGBA",
}
_JPEG_MODES = {1: "L", 3: "RGB", 4: "CMYK"}
# Besides: the upload's own file object, the re-encoded JPEG and its output buffer.
_FIXED_BYTES = 8 * 1024 * 1024
# libjpeg keeps every DCT coefficient of the image (2 bytes a sample) when the image
# comes in more than one scan: progressive, or sequential with one scan per component.
# Samples per pixel follow the chroma subsampling: 1.5 for 4:2:0, 3 for 4:4:4.
_COEFFICIENT_BYTES_PER_SAMPLE = 2
# Pillow's WebP plugin: libwebp's animation decoder holds two RGBA canvases and its
# own decode buffer, and the frame it hands over is copied once more into Pillow's
# image (measured: 4.2 to 4.8 times the decoded image at the peak).
_WEBP_EXTRA_BYTES_PER_PIXEL = 4 * 4


@dataclass(frozen=True)
class ImageHeader:
    format: str  # "JPEG" | "PNG" | "WEBP"
    width: int
    height: int
    mode: str  # the Pillow mode it decodes into
    # Whole-image buffers the format's decoder holds while filling Pillow's image.
    decoder_bytes: int = 0

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_bytes(self) -> int:
        """Bytes the decoded image takes in memory: width × height × bytes per pixel."""
        return self.pixels * BYTES_PER_PIXEL[self.mode]

    @property
    def working_bytes(self) -> int:
        """Peak bytes validating and re-encoding it takes (the decode budget's weight):
        the larger of decoding (image and decoder buffers) and converting."""
        decoding = self.decoded_bytes + self.decoder_bytes
        converting = self.pixels * WORKING_BYTES_PER_PIXEL[self.mode]
        return max(decoding, converting) + _FIXED_BYTES


def sniff_format(head: bytes) -> str | None:
    """The image format by magic bytes ("JPEG", "PNG", "WEBP"), or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(_PNG_MAGIC):
        return "PNG"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def read_header(raw: bytes, fmt: str) -> ImageHeader | None:
    """Size and decoded mode from the header of a sniffed format; None when malformed."""
    try:
        if fmt == "PNG":
            return _png_header(raw)
        if fmt == "WEBP":
            return _webp_header(raw)
        return _jpeg_header(raw)
    except (struct.error, IndexError):
        return None


def _png_header(raw: bytes) -> ImageHeader | None:
    # IHDR must be the first chunk, 13 bytes long.
    if raw[8:16] != b"\x00\x00\x00\x0dIHDR":
        return None
    width, height, depth, colour = struct.unpack_from(">IIBB", raw, 16)
    mode = _PNG_MODES.get((depth, colour))
    if mode is None:
        return None
    return ImageHeader("PNG", width, height, mode)


def _webp_header(raw: bytes) -> ImageHeader | None:
    # The first chunk carries the canvas size (same rules as Pillow's WebP plugin).
    chunk = raw[12:16]
    if chunk == b"VP8 " and raw[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack_from("<HH", raw, 26)
        width, height = width & 0x3FFF, height & 0x3FFF
    elif chunk == b"VP8X" and len(raw) >= 30:
        width = int.from_bytes(raw[24:27], "little") + 1
        height = int.from_bytes(raw[27:30], "little") + 1
    elif chunk == b"VP8L" and len(raw) >= 25 and raw[20] == 0x2F:
        (bits,) = struct.unpack_from("<I", raw, 21)
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    else:
        return None
    # Pillow decodes WebP as RGB or RGBA: 4 bytes a pixel either way.
    return ImageHeader(
        "WEBP", width, height, "RGBA", decoder_bytes=width * height * _WEBP_EXTRA_BYTES_PER_PIXEL
    )


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
_FILL = re.compile(rb"\xff+")  # in C: a file of fill bytes costs no Python loop


def _jpeg_header(raw: bytes) -> ImageHeader | None:
    # Walk the marker segments up to the first scan. Pillow keeps the size of the last
    # frame header it sees, so take the largest of all of them.
    best: tuple[int, int, int, float] | None = None  # width, height, components, samples
    progressive = False
    pos = 2
    while True:
        if raw[pos] != 0xFF:
            return None
        pos = _FILL.match(raw, pos).end()  # type: ignore[union-attr]  # fill bytes
        marker = raw[pos]
        pos += 1
        if marker in _STANDALONE_MARKERS:
            continue
        if marker == 0xD9:  # end of image before any scan
            return None
        (length,) = struct.unpack_from(">H", raw, pos)
        if length < 2:
            return None
        if marker == 0xDA:  # start of the first scan
            if best is None:
                return None
            return _jpeg_result(*best, progressive=progressive, scan_components=raw[pos + 2])
        if marker in _SOF_MARKERS:
            height, width, components = struct.unpack_from(">HHB", raw, pos + 3)
            if best is None or width * height > best[0] * best[1]:
                best = (width, height, components, _samples_per_pixel(raw, pos + 8, components))
            progressive = progressive or marker in _PROGRESSIVE_SOF
        pos += length


def _samples_per_pixel(raw: bytes, pos: int, components: int) -> float:
    # Each component: id, sampling factors (high nibble horizontal, low vertical), table.
    factors = [raw[pos + 3 * i + 1] for i in range(components)]
    blocks = [(f >> 4) * (f & 0x0F) for f in factors]
    widest = max(f >> 4 for f in factors) * max(f & 0x0F for f in factors)
    return sum(blocks) / widest if widest else float(components)


def _jpeg_result(
    width: int,
    height: int,
    components: int,
    samples: float,
    *,
    progressive: bool,
    scan_components: int,
) -> ImageHeader | None:
    mode = _JPEG_MODES.get(components)
    if mode is None:
        return None
    multi_scan = progressive or scan_components < components
    per_pixel = samples * _COEFFICIENT_BYTES_PER_SAMPLE if multi_scan else 0
    return ImageHeader("JPEG", width, height, mode, decoder_bytes=int(width * height * per_pixel))
