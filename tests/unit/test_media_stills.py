"""The pure parts of stills (issue 17; A14): what a leg keeps so a still can always be
made (the latest intact keyframe and the frames after it), and the decoding of the
picture of now from them, on frames made by real encoders."""

from __future__ import annotations

import io

import av
import pytest
from PIL import Image, ImageStat

from server.media import stills
from server.media.codecs import H264, VP8, VideoCodec
from server.media.stills import Gop, decode_last, decode_still
from tests.media_samples import h264_frames, vp8_frames


def _luma(jpeg: bytes) -> float:
    with Image.open(io.BytesIO(jpeg)) as img:
        return float(ImageStat.Stat(img.convert("L")).mean[0])


def _frames(codec: VideoCodec) -> list[bytes]:
    return [f for f, _ts in (vp8_frames() if codec is VP8 else h264_frames())]


def _shade(codec: VideoCodec, i: int) -> float:
    """The brightness of picture ``i`` decoded the plain way (every frame in order; the
    sample pictures differ in brightness from frame to frame)."""
    decoder = codec.open_decoder()
    pictures = [p for f in _frames(codec)[: i + 1] for p in decoder.decode(av.Packet(f))]
    img = pictures[i].to_image()  # type: ignore[union-attr]
    return float(ImageStat.Stat(img.convert("L")).mean[0])


def test_the_gop_starts_at_an_intact_keyframe_and_follows_it() -> None:
    gop = Gop()
    gop.add(b"delta", key=False, intact=True, at=0.0)
    assert gop.keyframe is None and gop.newest is None  # nothing to start from
    gop.add(b"K1", key=True, intact=True, at=1.0)
    gop.add(b"d1", key=False, intact=True, at=1.1)
    gop.add(b"d2", key=False, intact=True, at=1.2)
    assert gop.snapshot() == [b"K1", b"d1", b"d2"] and gop.newest == 1.2
    assert gop.keyframe == (b"K1", 1.0)
    # A torn keyframe does not replace the last good one.
    gop.add(b"K-torn", key=True, intact=False, at=1.3)
    assert gop.keyframe == (b"K1", 1.0) and gop.stopped
    # Frames after a loss refer to something missing: kept frames stay, nothing is added.
    gop.add(b"d3", key=False, intact=True, at=1.4)
    assert gop.snapshot() == [b"K1", b"d1", b"d2"] and gop.newest == 1.2
    # The next intact keyframe starts again.
    gop.add(b"K2", key=True, intact=True, at=2.0)
    assert gop.snapshot() == [b"K2"] and not gop.stopped
    snap = gop.snapshot()
    gop.add(b"d4", key=False, intact=True, at=2.1)
    assert snap == [b"K2"]  # a snapshot is a copy: the leg goes on
    gop.clear()
    assert gop.keyframe is None


def test_a_lost_delta_frame_stops_the_gop() -> None:
    gop = Gop()
    gop.add(b"K", key=True, intact=True, at=0.0)
    gop.add(b"d1", key=False, intact=False, at=0.1)  # packets missing before it
    gop.add(b"d2", key=False, intact=True, at=0.2)
    assert gop.snapshot() == [b"K"] and gop.stopped and gop.newest == 0.0


def test_the_gop_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stills, "GOP_MAX_FRAMES", 3)
    gop = Gop()
    gop.add(b"K", key=True, intact=True, at=0.0)
    for i in range(5):
        gop.add(b"d", key=False, intact=True, at=0.1 * (i + 1))
    assert len(gop.snapshot()) == 3 and gop.stopped
    monkeypatch.setattr(stills, "GOP_MAX_BYTES", 10)
    gop.add(b"K" * 6, key=True, intact=True, at=1.0)
    gop.add(b"d" * 6, key=False, intact=True, at=1.1)
    assert gop.snapshot() == [b"K" * 6] and gop.stopped


@pytest.mark.parametrize("codec", [VP8, H264], ids=["vp8", "h264"])
def test_a_keyframe_decodes_to_a_jpeg(codec: VideoCodec) -> None:
    jpeg, width, height = decode_still(_frames(codec)[0], codec)
    assert jpeg[:2] == b"\xff\xd8" and (width, height) == (320, 240)
    assert abs(_luma(jpeg) - _shade(codec, 0)) < 3


@pytest.mark.parametrize("codec", [VP8, H264], ids=["vp8", "h264"])
def test_the_gop_decodes_to_the_picture_of_its_newest_frame(codec: VideoCodec) -> None:
    frames = _frames(codec)
    assert codec.is_keyframe(frames[0]) and not codec.is_keyframe(frames[9])
    assert abs(_shade(codec, 9) - _shade(codec, 0)) > 20  # else this would prove nothing
    jpeg, _w, _h = decode_last(frames[:10], codec)
    assert abs(_luma(jpeg) - _shade(codec, 9)) < 3, (_luma(jpeg), _shade(codec, 9))


def test_what_does_not_decode_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode_last([], VP8)
    with pytest.raises(ValueError):
        decode_still(b"\x00" * 40, VP8)
    # A frame that fails after a good picture ends the run: the picture before it is used.
    frames = _frames(VP8)
    jpeg, _w, _h = decode_last([*frames[:5], b"\xff" * 7, *frames[5:8]], VP8)
    assert min(abs(_luma(jpeg) - _shade(VP8, i)) for i in (4, 7)) < 3
