"""The video codecs a party may send, and what recording and relaying need of each.

VP8 is preferred (every desktop browser has it, WebM holds it). Some embedded browsers
and WebViews have only H.264; their party negotiates H.264 instead (issue 9) and is
recorded as sent, in Matroska because WebM cannot hold H.264 (A15). Pure: no asyncio,
no aiortc; the parsing here is tested on frames made by real encoders.

H.264 frames arrive as aiortc's depacketizer writes them: Annex B, every NAL unit behind
a 00 00 00 01 start code; browsers (and libx264 without global headers) repeat the
SPS and PPS before every IDR picture.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePath

import av
from av.container import OutputContainer
from av.stream import Stream
from av.video.codeccontext import VideoCodecContext

DEFAULT_DIMENSIONS = (640, 480)  # header of a file opened before any keyframe came

NAL_SLICE = 1
NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
START_CODE = b"\x00\x00\x00\x01"

# SPS and PPS of a 640×480 constrained-baseline stream (libx264). Only for an H.264
# segment whose file opens on the voice before the first keyframe: Matroska needs some
# decoder configuration in the track header, and the party's own SPS/PPS, repeated
# before each of its IDR pictures, take over once video comes.
_PLACEHOLDER_SPS = bytes.fromhex("6742c016da0280f6840000030004000003007a3c58ba80")
_PLACEHOLDER_PPS = bytes.fromhex("68ce0fc8")
_PLACEHOLDER_PARAMETER_SETS = START_CODE + _PLACEHOLDER_SPS + START_CODE + _PLACEHOLDER_PPS


# ── VP8 ──────────────────────────────────────────────────────────────────────────────
def is_vp8_keyframe(data: bytes) -> bool:
    # RFC 6386 §9.1: bit 0 of the frame tag is 0 for a key frame, which then carries the
    # start code 9d 01 2a (checked too: a frame missing its first packet is not one).
    return len(data) >= 10 and (data[0] & 1) == 0 and data[3:6] == b"\x9d\x01\x2a"


def vp8_dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 key frame header (RFC 6386 §9.1)."""
    if not is_vp8_keyframe(data):
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None


# ── H.264 ────────────────────────────────────────────────────────────────────────────
def nal_units(data: bytes) -> Iterator[bytes]:
    """The NAL units of an Annex B byte stream, without their start codes."""
    start = data.find(b"\x00\x00\x01")
    while start != -1 and start + 3 < len(data):
        begin = start + 3
        start = data.find(b"\x00\x00\x01", begin)
        end = len(data) if start == -1 else start
        # A zero before the next 00 00 01 belongs to its 4-byte start code (emulation
        # prevention keeps 00 00 out of a NAL's own bytes).
        while end > begin and data[end - 1] == 0:
            end -= 1
        if end > begin:
            yield data[begin:end]


def is_h264_keyframe(data: bytes) -> bool:
    """An IDR picture with its SPS in front: what a decoder can start from. A frame
    whose first packet (the SPS) was lost is not one."""
    sps = False
    for nal in nal_units(data):
        kind = nal[0] & 0x1F
        if kind == NAL_SPS:
            sps = True
        elif kind == NAL_IDR:
            return sps
        elif kind == NAL_SLICE:
            return False
    return False


def h264_parameter_sets(data: bytes) -> bytes | None:
    """The frame's SPS and PPS as an Annex B string (a Matroska track's decoder
    configuration), or None unless it carries both."""
    found: dict[int, bytes] = {}
    for nal in nal_units(data):
        kind = nal[0] & 0x1F
        if kind in (NAL_SPS, NAL_PPS):
            found.setdefault(kind, nal)
        elif kind in (NAL_SLICE, NAL_IDR):
            break
    if NAL_SPS not in found or NAL_PPS not in found:
        return None
    return START_CODE + found[NAL_SPS] + START_CODE + found[NAL_PPS]


class _Bits:
    """Reads an RBSP (a NAL unit's payload with emulation prevention removed)."""

    def __init__(self, nal_payload: bytes) -> None:
        rbsp = nal_payload.replace(b"\x00\x00\x03", b"\x00\x00")
        self.value = int.from_bytes(rbsp, "big")
        self.size = len(rbsp) * 8
        self.pos = 0

    def u(self, n: int) -> int:
        if self.pos + n > self.size:
            raise ValueError("SPS truncated")
        self.pos += n
        return (self.value >> (self.size - self.pos)) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


# Profiles whose SPS carries chroma format, bit depths and scaling lists (H.264 §7.3.2.1.1).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt != 0:
            nxt = (last + bits.se() + 256) % 256
        last = nxt or last


def sps_dimensions(sps: bytes) -> tuple[int, int]:
    """Displayed width and height from an SPS NAL unit (H.264 §7.3.2.1.1, §7.4.2.1.1).
    Raises ValueError on a malformed one."""
    bits = _Bits(sps[1:])
    profile = bits.u(8)
    bits.u(16)  # constraint flags, level
    bits.ue()  # seq_parameter_set_id
    chroma_format = 1
    separate_planes = 0
    if profile in _HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format == 3:
            separate_planes = bits.u(1)
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        bits.u(1)  # delta_pic_order_always_zero_flag
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field_flag
    bits.u(1)  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_units * 16
    if bits.u(1):  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        chroma_array = 0 if separate_planes else chroma_format
        sub_width = 2 if chroma_array in (1, 2) else 1
        sub_height = 2 if chroma_array == 1 else 1
        width -= sub_width * (left + right)
        height -= sub_height * (2 - frame_mbs_only) * (top + bottom)
    if width <= 0 or height <= 0:
        raise ValueError("SPS crops the whole picture")
    return width, height


def h264_dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height from the SPS of a frame, None if it carries none (or a bad one)."""
    for nal in nal_units(data):
        if nal[0] & 0x1F == NAL_SPS:
            try:
                return sps_dimensions(nal)
            except ValueError:
                return None
    return None


# ── the codec descriptions ───────────────────────────────────────────────────────────
def _vp8_stream(container: OutputContainer, keyframe: bytes | None) -> Stream:
    width, height = (vp8_dimensions(keyframe) if keyframe else None) or DEFAULT_DIMENSIONS
    return container.add_mux_stream("vp8", width=width, height=height)


def _h264_stream(container: OutputContainer, keyframe: bytes | None) -> Stream:
    params = h264_parameter_sets(keyframe) if keyframe else None
    dims = h264_dimensions(keyframe) if keyframe else None
    if params is None or dims is None:
        params, dims = _PLACEHOLDER_PARAMETER_SETS, DEFAULT_DIMENSIONS
    # Matroska refuses an H.264 track without decoder configuration, and PyAV's mux
    # streams (add_mux_stream) cannot carry one. A stream copied from an unopened
    # template never opens an encoder, and its codec context's width, height and
    # extradata become the track header when the file starts; the muxer turns the Annex
    # B configuration into avcC and every Annex B frame into length-prefixed NAL units.
    with av.open(io.BytesIO(), "w", format="matroska") as scratch:
        template = scratch.add_stream("libx264")
        stream = container.add_stream_from_template(template, opaque=True)
    ctx = stream.codec_context
    if not isinstance(ctx, VideoCodecContext):
        raise TypeError("template stream without a video codec context")
    ctx.width, ctx.height = dims
    ctx.extradata = params
    return stream


@dataclass(frozen=True)
class VideoCodec:
    name: str  # as SDP and aiortc spell it
    decoder: str  # FFmpeg decoder for stills and transcoding
    container: str  # FFmpeg muxer of the party's recording
    suffix: str  # of the recording's file name
    content_type: str  # served to reviewers
    is_keyframe: Callable[[bytes], bool]
    # The recording's video stream, set up from the first keyframe (None: no video yet).
    mux_stream: Callable[[OutputContainer, bytes | None], Stream]

    def open_decoder(self) -> VideoCodecContext:
        context = av.CodecContext.create(self.decoder, "r")
        if not isinstance(context, VideoCodecContext):
            raise TypeError(f"{self.decoder} is not a video decoder")
        return context


VP8 = VideoCodec("VP8", "vp8", "webm", ".webm", "video/webm", is_vp8_keyframe, _vp8_stream)
H264 = VideoCodec(
    "H264", "h264", "matroska", ".mkv", "video/x-matroska", is_h264_keyframe, _h264_stream
)
# In order of preference.
VIDEO_CODECS = (VP8, H264)


def codec_for_path(path: str | PurePath) -> VideoCodec:
    """The video codec of a recording, from its file name."""
    suffix = PurePath(path).suffix
    for codec in VIDEO_CODECS:
        if codec.suffix == suffix:
            return codec
    raise ValueError(f"not a recording: {path}")


def offered_video_codecs(sdp: str) -> set[str]:
    """Codec names (upper case) in the offer's video sections, from their rtpmap lines."""
    names: set[str] = set()
    in_video = False
    for line in sdp.splitlines():
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        elif in_video and line.startswith("a=rtpmap:"):
            _, _, rest = line.partition(" ")
            names.add(rest.split("/", 1)[0].strip().upper())
    return names


def choose_video_codec(sdp: str) -> VideoCodec | None:
    """The codec a party's video leg negotiates: VP8 if offered, else H.264; None if
    the offer has neither."""
    offered = offered_video_codecs(sdp)
    for codec in VIDEO_CODECS:
        if codec.name in offered:
            return codec
    return None
