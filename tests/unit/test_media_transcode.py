"""The transcoding fallback (issue 9): encoded frames of one codec in, pictures out for a
sender that encodes another; and the relay track choosing that mode by itself."""

from __future__ import annotations

import asyncio
from typing import Any

import av
import pytest
from aiortc.mediastreams import MediaStreamError

from server.media.codecs import H264, VP8
from server.media.relay import PASSTHROUGH, TRANSCODE, ForwardTrack
from server.media.transcode import INPUT_QUEUE, OUTPUT_QUEUE, FrameDecoder, TranscodeTrack
from tests.media_samples import HEIGHT, WIDTH, h264_frames, vp8_frames


def luma(picture: av.VideoFrame) -> float:
    """Mean brightness of the middle row (a plane's rows are padded to its line size)."""
    plane = picture.planes[0]
    start = plane.line_size * (plane.height // 2)
    row = bytes(plane)[start : start + plane.width]
    return sum(row) / len(row)


async def wait_until(predicate: Any, within: float = 5.0) -> None:
    for _ in range(int(within / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_frame_decoder_gives_pictures_on_the_relay_clock() -> None:
    decoder = FrameDecoder(H264)
    data, ts = h264_frames()[0]
    (picture,) = decoder.decode(data, 123_000 + ts)
    assert (picture.width, picture.height) == (WIDTH, HEIGHT)
    assert picture.pts == 123_000 and picture.time_base == pytest.approx(1 / 90_000)
    # The receiving leg's encoder decides its own keyframes.
    assert picture.pict_type == av.video.frame.PictureType.NONE


@pytest.mark.parametrize("codec", [H264, VP8], ids=["h264", "vp8"])
async def test_encoded_frames_become_the_pictures_that_were_encoded(codec: Any) -> None:
    frames = h264_frames() if codec is H264 else vp8_frames()
    asked: list[int] = []
    track = TranscodeTrack(codec, need_keyframe=lambda: asked.append(1))
    try:
        track.push(frames[1][0], frames[1][1])  # a P picture first: nothing to start from
        assert asked and track.decoded == 0
        for i, (data, ts) in enumerate(frames[15:], start=15):
            track.push(data, ts)
            picture = await asyncio.wait_for(track.recv(), 5)
            assert (picture.width, picture.height) == (WIDTH, HEIGHT)
            assert picture.pts == ts
            # The samples' frame i is a flat grey of (9 i) mod 255: lossy, but close.
            assert abs(luma(picture) - (i * 9) % 255) < 6, i
        assert track.decoded == 30 and track.decode_seconds > 0
    finally:
        track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_a_slow_encoder_gets_the_newest_pictures() -> None:
    track = TranscodeTrack(H264, need_keyframe=lambda: None)
    try:
        frames = h264_frames()
        for data, ts in frames[:10]:
            track.push(data, ts)
        await wait_until(lambda: track.decoded == 10)
        assert track.dropped_pictures == 10 - OUTPUT_QUEUE
        got = [(await track.recv()).pts for _ in range(OUTPUT_QUEUE)]
        assert got == [ts for _, ts in frames[10 - OUTPUT_QUEUE : 10]]
    finally:
        track.stop()


async def test_a_decoder_backlog_is_dropped_and_restarts_at_a_keyframe() -> None:
    asked: list[int] = []
    track = TranscodeTrack(H264, need_keyframe=lambda: asked.append(1))
    try:
        frames = h264_frames()
        # push() never yields to the loop, so the decoder cannot catch up meanwhile.
        for data, ts in frames[: INPUT_QUEUE + 1]:
            track.push(data, ts)
        assert asked == [1] and track.dropped_frames == INPUT_QUEUE + 1
        track.push(*frames[INPUT_QUEUE + 1])  # not a keyframe: still waiting
        assert len(asked) == 2
        track.push(*frames[30])  # an IDR picture
        picture = await asyncio.wait_for(track.recv(), 5)
        assert picture.pts == frames[30][1]
    finally:
        track.stop()


async def test_the_relay_track_transcodes_only_while_the_codecs_differ() -> None:
    """An H.264 leg receives first from a VP8 party, then from the same party
    reconnected with H.264 (a new leg of it): pictures, then the packets as sent."""
    asked: list[int] = []
    forced: list[int] = []
    track = ForwardTrack("video", need_keyframe=lambda: asked.append(1), codec=H264)
    track.force_keyframe = lambda: forced.append(1)
    try:
        vp8_leg, h264_leg = object(), object()
        for data, ts in vp8_frames()[:3]:
            track.push(data, ts, vp8_leg, VP8)
        assert track.mode == TRANSCODE and forced == [1]
        pictures = [await asyncio.wait_for(track.recv(), 5) for _ in range(3)]
        assert all(isinstance(p, av.VideoFrame) for p in pictures)
        assert [p.pts for p in pictures] == [0, 6000, 12000]

        waiting = asyncio.ensure_future(track.recv())  # the sender waits for more
        await asyncio.sleep(0.05)
        for data, ts in h264_frames()[:2]:
            track.push(data, ts, h264_leg, H264)
        assert track.mode == PASSTHROUGH
        packet = await asyncio.wait_for(waiting, 5)
        assert isinstance(packet, av.Packet) and bytes(packet) == h264_frames()[0][0]
        # Time keeps moving forward for the receiver across the switch.
        assert packet.pts is not None and packet.pts > 2 * 6000
        assert len(forced) == 1  # the sender's own encoder is idle again
    finally:
        track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(track.recv(), 1)
