"""Real encoded VP8, H.264 and Opus frames for media unit tests (made with PyAV's
encoders: libvpx, libx264, libopus)."""

from __future__ import annotations

import fractions
from functools import cache

import av
from av.codec.context import CodecContext

WIDTH, HEIGHT, FPS = 320, 240, 15


@cache
def vp8_frames(count: int = 45, keyframe_every: int = 15) -> list[tuple[bytes, int]]:
    """(payload, RTP timestamp at 90 kHz) for ``count`` frames at 15 fps."""
    enc = CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = WIDTH, HEIGHT, "yuv420p"  # type: ignore[attr-defined]
    enc.time_base = fractions.Fraction(1, 90_000)
    enc.framerate = FPS  # type: ignore[attr-defined]
    enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    out: list[tuple[bytes, int]] = []
    for i in range(count):
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        for n, plane in enumerate(frame.planes):
            plane.update(bytes([(i * 9 + n * 40) % 255]) * plane.buffer_size)
        frame.pts = i * 6000
        frame.time_base = enc.time_base
        frame.pict_type = (
            av.video.frame.PictureType.I
            if i % keyframe_every == 0
            else av.video.frame.PictureType.NONE
        )  # type: ignore[attr-defined]
        for packet in enc.encode(frame):  # type: ignore[attr-defined]
            out.append((bytes(packet), int(packet.pts or 0)))
    return out


@cache
def h264_frames(
    count: int = 45,
    keyframe_every: int = 15,
    width: int = WIDTH,
    height: int = HEIGHT,
    profile: str | None = "Baseline",
) -> list[tuple[bytes, int]]:
    """(Annex B payload, RTP timestamp at 90 kHz) for ``count`` frames at 15 fps, as
    aiortc's depacketizer hands over a browser's H.264: SPS and PPS before every IDR.
    ``profile=None`` leaves libx264's default (High)."""
    enc = CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"  # type: ignore[attr-defined]
    enc.time_base = fractions.Fraction(1, 90_000)
    enc.framerate = FPS  # type: ignore[attr-defined]
    enc.options = {"preset": "ultrafast", "tune": "zerolatency"}
    if profile is not None:
        enc.profile = profile
    out: list[tuple[bytes, int]] = []
    for i in range(count):
        frame = av.VideoFrame(width, height, "yuv420p")
        for n, plane in enumerate(frame.planes):
            plane.update(bytes([(i * 9 + n * 40) % 255]) * plane.buffer_size)
        frame.pts = i * 6000
        frame.time_base = enc.time_base
        frame.pict_type = (
            av.video.frame.PictureType.I
            if i % keyframe_every == 0
            else av.video.frame.PictureType.NONE
        )  # type: ignore[attr-defined]
        for packet in enc.encode(frame):  # type: ignore[attr-defined]
            out.append((bytes(packet), int(packet.pts or 0)))
    return out


@cache
def opus_frames(count: int = 150) -> list[tuple[bytes, int]]:
    """(payload, RTP timestamp at 48 kHz) for ``count`` 20 ms frames of silence."""
    enc = CodecContext.create("libopus", "w")
    enc.sample_rate = 48_000  # type: ignore[attr-defined]
    enc.layout = "stereo"  # type: ignore[attr-defined]
    enc.format = "s16"  # type: ignore[attr-defined]
    enc.time_base = fractions.Fraction(1, 48_000)
    out: list[tuple[bytes, int]] = []
    for i in range(count):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = 48_000
        frame.pts = i * 960
        frame.time_base = enc.time_base
        for packet in enc.encode(frame):  # type: ignore[attr-defined]
            out.append((bytes(packet), max(0, int(packet.pts or 0))))
    return out
