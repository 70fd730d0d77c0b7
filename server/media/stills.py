"""Stills from a party's live video (A14, A19; issue 17): what a leg keeps so a still can
always be made, and the decoding of it. No asyncio and no aiortc: the session drives it.

A still is preferably a keyframe asked for at the moment of the request (one frame to
decode, the picture of that moment). Asking can fail: the PLI is a UDP packet and can be
lost, the browser may answer late (measured in the field: 0.17–2.9 s) or with a keyframe
that loses a packet. So each leg also keeps its latest intact keyframe and the frames
after it (the *GOP*): decoded in order, they give the picture of *now* without asking
anyone. A frame that arrives after a loss refers to something missing, so the GOP stops
growing there; what it holds up to the loss still decodes cleanly, but it is older.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import av
import av.error

from server.media.codecs import VP8, VideoCodec

# The GOP is bounded: a party that sends no keyframe for long (the periodic request is
# every 10 s) must not make a leg hold, or a still decode, an unbounded run of frames.
# 450 frames is 15 s at 30 fps; 8 MB is ~30 s at 2.5 Mbit/s (the bitrate cap).
GOP_MAX_FRAMES = 450
GOP_MAX_BYTES = 8_000_000


class StillSource(StrEnum):
    """How a still's picture was obtained (kept in its metadata)."""

    KEYFRAME = "keyframe"  # the keyframe asked for at the request, or the first one (auto)
    RECENT_KEYFRAME = "recent_keyframe"  # a keyframe that arrived just before the request
    GOP = "gop"  # the latest keyframe and the frames after it, decoded up to the newest


class StillMiss(StrEnum):
    """Why no still could be made (logged, and said to the witness)."""

    NO_VIDEO = "no_video"  # no leg, or it closed while waiting
    NO_KEYFRAME = "no_keyframe"  # nothing came in time, and nothing kept was usable
    DECODE_ERROR = "decode_error"  # what came or was kept did not decode


@dataclass
class Gop:
    """One leg's latest intact keyframe and the intact frames after it, with their arrival
    times (monotonic seconds)."""

    frames: list[bytes] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    size: int = 0
    # True once a frame after the last kept one was lost, torn, or did not fit: the frames
    # kept still decode, but no longer reach the present.
    stopped: bool = False

    def add(self, data: bytes, *, key: bool, intact: bool, at: float) -> None:
        """A frame as it arrives. ``key``: it is a keyframe; ``intact``: no packet was
        missing before it and its head is there."""
        if key and intact:
            self.frames, self.arrivals, self.size, self.stopped = [data], [at], len(data), False
            return
        if not self.frames or self.stopped:
            return
        if (
            not intact
            or len(self.frames) >= GOP_MAX_FRAMES
            or self.size + len(data) > GOP_MAX_BYTES
        ):
            self.stopped = True
            return
        self.frames.append(data)
        self.arrivals.append(at)
        self.size += len(data)

    @property
    def keyframe(self) -> tuple[bytes, float] | None:
        return (self.frames[0], self.arrivals[0]) if self.frames else None

    @property
    def newest(self) -> float | None:
        """When the newest frame kept arrived."""
        return self.arrivals[-1] if self.arrivals else None

    def snapshot(self) -> list[bytes]:
        """The frames to decode for the newest picture kept (a copy: the leg goes on)."""
        return list(self.frames)

    def clear(self) -> None:
        self.frames, self.arrivals, self.size, self.stopped = [], [], 0, False


def _jpeg(frame: av.VideoFrame) -> tuple[bytes, int, int]:
    image = frame.to_image()  # type: ignore[no-untyped-call]
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue(), image.width, image.height


def decode_last(frames: Sequence[bytes], codec: VideoCodec = VP8) -> tuple[bytes, int, int]:
    """JPEG of the last picture of ``frames`` (a keyframe, then the frames after it),
    decoded in order. Blocking: run in a thread. ValueError if nothing decodes; a frame
    that fails after a good picture ends the run there (the picture before it is used)."""
    if not frames:
        raise ValueError("no frame to decode")
    decoder = codec.open_decoder()
    last: av.VideoFrame | None = None
    for data in frames:
        try:
            pictures = decoder.decode(av.Packet(data))
        except av.error.FFmpegError:
            if last is None:
                raise ValueError("keyframe did not decode") from None
            break
        for picture in pictures:
            if isinstance(picture, av.VideoFrame):
                last = picture
    if last is None:
        try:
            for picture in decoder.decode(None):
                if isinstance(picture, av.VideoFrame):
                    last = picture
        except av.error.FFmpegError:
            pass
    if last is None:
        raise ValueError("keyframe did not decode")
    return _jpeg(last)


def decode_still(keyframe: bytes, codec: VideoCodec = VP8) -> tuple[bytes, int, int]:
    """JPEG of one keyframe (blocking: run in a thread)."""
    return decode_last([keyframe], codec)
