"""Codec helpers of the recorder and relay (issue 9): H.264 keyframes and picture sizes
read from frames libx264 really produced, and which video codec a party's offer gets."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection, RTCRtpSender

from server.media.codecs import (
    _PLACEHOLDER_PARAMETER_SETS,
    DEFAULT_DIMENSIONS,
    H264,
    NAL_IDR,
    NAL_PPS,
    NAL_SPS,
    VP8,
    choose_video_codec,
    codec_for_path,
    h264_dimensions,
    h264_parameter_sets,
    is_h264_keyframe,
    nal_units,
    offered_video_codecs,
    sps_dimensions,
)
from tests.media_samples import HEIGHT, WIDTH, h264_frames, vp8_frames


def test_h264_keyframes_are_the_idr_pictures_with_their_sps() -> None:
    frames = [data for data, _ts in h264_frames()]
    keys = [i for i, data in enumerate(frames) if is_h264_keyframe(data)]
    assert keys == [0, 15, 30]  # the encoder was told to make these IDR pictures
    kinds = [nal[0] & 0x1F for nal in nal_units(frames[15])]
    assert kinds[:2] == [NAL_SPS, NAL_PPS] and NAL_IDR in kinds
    # The same IDR picture without its SPS (its first packet lost) cannot start a decoder.
    idr_only = b"".join(b"\x00\x00\x00\x01" + n for n in nal_units(frames[15]) if n[0] & 0x1F == 5)
    assert not is_h264_keyframe(idr_only)
    assert not is_h264_keyframe(b"") and not is_h264_keyframe(b"\x00\x00\x01")
    # A VP8 keyframe is not an H.264 one, and the other way round.
    assert not is_h264_keyframe(vp8_frames()[0][0]) and not VP8.is_keyframe(frames[0])


def test_nal_units_split_on_three_and_four_byte_start_codes() -> None:
    stream = b"\x00\x00\x00\x01\x67\x42\x00\x00\x01\x68\xce\x00\x00\x00\x01\x65\x88\x84"
    assert list(nal_units(stream)) == [b"\x67\x42", b"\x68\xce", b"\x65\x88\x84"]


@pytest.mark.parametrize(
    ("width", "height", "profile"),
    [
        (WIDTH, HEIGHT, "Baseline"),
        (640, 360, "Baseline"),  # 360 is not a multiple of 16: the SPS crops
        (352, 288, None),  # libx264's default, High: chroma format and bit depths in the SPS
    ],
)
def test_h264_picture_size_comes_from_the_sps(width: int, height: int, profile: str | None) -> None:
    frames = h264_frames(16, 15, width, height, profile)
    assert h264_dimensions(frames[0][0]) == (width, height)
    assert h264_dimensions(frames[1][0]) is None  # no SPS in a P picture


def test_parameter_sets_are_taken_from_a_keyframe() -> None:
    key, delta = h264_frames()[0][0], h264_frames()[1][0]
    params = h264_parameter_sets(key)
    assert params is not None
    assert [n[0] & 0x1F for n in nal_units(params)] == [NAL_SPS, NAL_PPS]
    assert params in key  # copied, not made up
    assert h264_parameter_sets(delta) is None
    # The stand-in for a segment that opens before the first keyframe is a valid SPS.
    assert sps_dimensions(next(nal_units(_PLACEHOLDER_PARAMETER_SETS))) == DEFAULT_DIMENSIONS
    with pytest.raises(ValueError, match="truncated"):
        sps_dimensions(next(nal_units(params))[:4])


def test_recordings_are_told_apart_by_their_suffix() -> None:
    assert codec_for_path("2026/11/27/s/investor-00.mkv") is H264
    assert codec_for_path("witness-01.webm") is VP8
    assert (H264.container, H264.content_type) == ("matroska", "video/x-matroska")
    with pytest.raises(ValueError, match="not a recording"):
        codec_for_path("investor-00.mp4")


async def _offer(video: tuple[str, ...]) -> str:
    """A real aiortc offer whose video transceiver prefers only ``video`` (all: ())."""
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio")
        transceiver = pc.addTransceiver("video")
        if video:
            caps = RTCRtpSender.getCapabilities("video").codecs
            transceiver.setCodecPreferences([c for c in caps if c.mimeType.lower() in video])
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


async def test_vp8_is_preferred_and_h264_is_the_fallback() -> None:
    everything = await _offer(())
    assert {"VP8", "H264", "RTX"} <= offered_video_codecs(everything)
    assert choose_video_codec(everything) is VP8
    h264_only = await _offer(("video/h264", "video/rtx"))
    assert "VP8" not in offered_video_codecs(h264_only)
    assert choose_video_codec(h264_only) is H264
    # Opus in the audio section does not count as video; no video section, no choice.
    assert "OPUS" not in offered_video_codecs(everything)
    audio_only = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"
    assert choose_video_codec(audio_only) is None
    vp9 = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 98\r\na=rtpmap:98 VP9/90000\r\n"
    assert choose_video_codec(vp9) is None
