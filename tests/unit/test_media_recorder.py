"""Recording segments: keyframe start, one clock, cues, crash tolerance (A15, A19), for
VP8 in WebM and H.264 in Matroska (issue 9)."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.media.codecs import H264, is_vp8_keyframe, nal_units, vp8_dimensions
from server.media.recorder import Cue, SegmentWriter, _TrackClock, finalize
from tests.media_samples import HEIGHT, WIDTH, h264_frames, opus_frames, vp8_frames


def feed(
    writer: SegmentWriter,
    *,
    start_ms: int = 1000,
    skip_video: int = 0,
    video: list[tuple[bytes, int]] | None = None,
) -> None:
    """Video and audio interleaved as they would arrive, the first at ``start_ms``."""
    frames = (video or vp8_frames())[skip_video:]
    events = [(ts * 1000 // 90_000, "v", d, ts) for d, ts in frames]
    events += [(ts * 1000 // 48_000, "a", d, ts) for d, ts in opus_frames()]
    for t, kind, data, ts in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == "v":
            writer.write_video(data, ts, start_ms + t)
        else:
            writer.write_audio(data, ts, start_ms + t)


def decode(path: Path) -> dict[str, int]:
    counts = {"video": 0, "audio": 0}
    with av.open(str(path)) as c:
        for frame in c.decode(*c.streams.video, *c.streams.audio):
            counts["video" if isinstance(frame, av.VideoFrame) else "audio"] += 1
    return counts


def test_vp8_header_parsing() -> None:
    key, delta = vp8_frames()[0][0], vp8_frames()[1][0]
    assert is_vp8_keyframe(key) and not is_vp8_keyframe(delta)
    assert vp8_dimensions(key) == (WIDTH, HEIGHT)
    assert vp8_dimensions(delta) is None and not is_vp8_keyframe(b"")
    # A frame whose first packet was lost: bit 0 may read 0, but no start code.
    assert not is_vp8_keyframe(b"\x00" + key[10:40])


def test_segment_is_copied_frame_for_frame_and_decodes(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path / "investor-00.webm")
    feed(writer)
    writer.close()
    assert writer.failed is None and writer.video_frames == 45
    facts = finalize(writer.path)
    assert facts.decodable and facts.video_frames == 45
    assert facts.start_ms == 1000  # on the session clock, not the track's own
    assert 2900 <= facts.duration_ms <= 3100
    assert decode(writer.path) == {"video": 45, "audio": facts.audio_frames}
    # Frames are the bytes received: no re-encode.
    with av.open(str(writer.path)) as c:
        first = next(p for p in c.demux(c.streams.video[0]) if p.size)
        assert bytes(first) == vp8_frames()[0][0]
        assert c.streams.video[0].codec_context.name == "vp8"


def test_file_starts_on_a_keyframe_and_audio_before_it_is_dropped(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path / "w.webm")
    feed(writer, skip_video=3)  # joined mid-GOP: frames 3..14 cannot be decoded alone
    writer.close()
    facts = finalize(writer.path)
    assert facts.video_frames == 30  # from the keyframe at frame 15
    with av.open(str(writer.path)) as c:
        first = next(p for p in c.demux() if p.size)
        assert first.stream.type == "video" and first.is_keyframe
    assert decode(writer.path)["video"] == 30


def test_voice_is_recorded_when_no_keyframe_ever_comes(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path / "w.webm")
    for data, ts in opus_frames():
        writer.write_audio(data, ts, 500 + ts * 1000 // 48_000)
    writer.close()
    facts = finalize(writer.path)
    assert facts.video_frames == 0 and facts.audio_frames >= 148
    assert facts.start_ms == 500
    assert facts.decodable  # a voice-only segment is good evidence, not a failure


def test_video_after_a_voice_only_start_still_begins_on_a_keyframe(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path / "w.webm")
    for data, ts in opus_frames()[:110]:  # 2.2 s of voice: the file opens without video
        writer.write_audio(data, ts, ts * 1000 // 48_000)
    assert writer.opened
    for data, ts in vp8_frames()[5:]:  # camera comes on mid-GOP
        writer.write_video(data, ts, 2300 + ts * 1000 // 90_000)
    writer.close()
    facts = finalize(writer.path)
    assert facts.video_frames == 30 and facts.decodable
    assert decode(writer.path)["video"] == 30


def test_cues_are_muxed_as_webvtt(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path / "w.webm")
    feed(writer)
    writer.add_cue(Cue(1500, 2500, "您是否本人自愿开户？ --> 是"))
    writer.add_cue(Cue(2500, 3000, "second\nline"))
    writer.close()
    facts = finalize(writer.path)
    assert facts.cues == 2 and not writer.vtt_path.exists()
    with av.open(str(writer.path)) as c:
        (sub,) = c.streams.subtitles
        cues = [(p.pts, bytes(p).decode()) for p in c.demux(sub) if p.size]
    assert cues == [(1500, "您是否本人自愿开户？ → 是"), (2500, "second line")]


def test_a_late_frame_never_reopens_a_closed_file(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path / "w.webm")
    feed(writer)
    writer.close()
    size = writer.path.stat().st_size
    writer.write_video(vp8_frames()[0][0], 99 * 6000, 99_999)  # a keyframe after stop
    writer.write_audio(opus_frames()[0][0], 0, 99_999)
    assert writer.path.stat().st_size == size and writer.video_frames == 45


@pytest.mark.parametrize("whole_frames", [10, 40])
def test_a_torn_file_keeps_its_playable_part(tmp_path: Path, whole_frames: int) -> None:
    """What a SIGKILL leaves: the file cut in the middle of a frame, no index, no
    duration. Every frame wholly on disk before the cut is kept."""
    writer = SegmentWriter(tmp_path / "w.webm")
    feed(writer)
    writer.add_cue(Cue(1200, 1800, "cue"))
    writer.container.close()  # type: ignore[union-attr]  # flushed; torn below
    with av.open(str(writer.path)) as c:
        video = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    pos, size = video[whole_frames - 1]
    cut = pos + size + (video[whole_frames][1] // 2 if whole_frames < len(video) else 0)
    torn = tmp_path / "torn.webm"
    torn.write_bytes(writer.path.read_bytes()[:cut])
    shutil.copy(writer.vtt_path, torn.with_suffix(".vtt"))
    facts = finalize(torn)
    assert facts.decodable and facts.cues == 1
    assert whole_frames <= facts.video_frames <= whole_frames + 1
    assert decode(torn)["video"] == facts.video_frames


def test_nothing_on_disk_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "w.webm"
    path.write_bytes(b"\x1aE\xdf\xa3")  # a header torn after 4 bytes
    facts = finalize(path)
    assert not facts.decodable and facts.video_frames == 0


def test_track_clock_places_first_frame_at_arrival_and_stays_monotonic() -> None:
    clock = _TrackClock(90_000)
    assert clock.to_ms(0, 5000) == 5000
    assert clock.to_ms(9000, 5200) == 5100  # sender spacing, not arrival jitter
    assert clock.to_ms(9000, 5300) == 5101  # a duplicate timestamp moves forward


def test_track_clock_follows_the_least_delay_so_a_held_first_frame_does_not_shift_all() -> None:
    # CI (issue 21): a first frame held 400 ms, then the sender caught up in a burst.
    # Anchored on that frame alone, the segment ran 400 ms past its last arrival.
    # The sender's frame k is taken at 1000 + 33k ms on our clock (2970 ticks apart).
    clock = _TrackClock(90_000)
    assert clock.to_ms(0, 1400) == 1400
    burst = [clock.to_ms(2970 * k, 1410 + k) for k in range(1, 13)]  # 12 frames in 12 ms
    assert burst == sorted(burst) and burst[-1] <= 1410 + 12
    # Then 20 ms on the way, the least seen: each frame where it arrived, 33 ms apart.
    steady = [clock.to_ms(2970 * k, 1000 + 33 * k + 20) for k in range(13, 40)]
    assert steady == [1000 + 33 * k + 20 for k in range(13, 40)]


@given(st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 500)), min_size=1, max_size=200))
def test_track_clock_never_places_a_frame_after_it_arrived(
    steps: list[tuple[int, int]],
) -> None:
    """Frames 0–3 s apart at the sender, each held 0–0.5 s: no frame is placed later than
    its arrival, unless it is nudged a millisecond past the one before (a run of equal
    timestamps), and the track stays strictly increasing."""
    clock = _TrackClock(90_000)
    sent, placed = 0, -1
    for gap, held in steps:
        sent += gap
        arrival = sent + held
        ms = clock.to_ms(sent * 90, arrival)
        assert ms > placed
        assert ms <= arrival or ms == placed + 1
        placed = ms


# ── H.264 (a browser without VP8) ───────────────────────────────────────────────────
def annex_b(avcc: bytes) -> bytes:
    """Matroska stores H.264 as length-prefixed NAL units: back to start codes."""
    out, pos = b"", 0
    while pos < len(avcc):
        size = int.from_bytes(avcc[pos : pos + 4], "big")
        out += b"\x00\x00\x00\x01" + avcc[pos + 4 : pos + 4 + size]
        pos += 4 + size
    return out


def test_h264_segment_is_matroska_copied_frame_for_frame(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path / "investor-00.mkv", H264)
    feed(writer, video=h264_frames(), skip_video=3)  # joined mid-GOP
    writer.close()
    assert writer.failed is None and writer.video_frames == 30  # from the IDR at 15
    facts = finalize(writer.path)
    assert facts.decodable and facts.video_frames == 30 and facts.start_ms >= 1000
    assert decode(writer.path) == {"video": 30, "audio": facts.audio_frames}
    assert facts.audio_frames >= 0.9 * facts.duration_ms / 20
    header = writer.path.read_bytes()[:64]  # EBML DocType: WebM may not carry H.264
    assert b"matroska" in header and b"webm" not in header
    with av.open(str(writer.path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (WIDTH, HEIGHT)
        stored = [annex_b(bytes(p)) for p in c.demux(stream) if p.size]
    # The NAL units as the party sent them (no re-encode), only the framing differs.
    sent = [data for data, _ts in h264_frames()[15:]]
    assert [list(nal_units(s)) for s in stored] == [list(nal_units(s)) for s in sent]


def test_h264_video_after_a_voice_only_start_still_decodes(tmp_path: Path) -> None:
    """The file opens on the voice before any SPS came (placeholder decoder
    configuration); the party's own SPS/PPS, repeated before each IDR, take over."""
    writer = SegmentWriter(tmp_path / "w.mkv", H264)
    for data, ts in opus_frames()[:110]:
        writer.write_audio(data, ts, ts * 1000 // 48_000)
    assert writer.opened
    for data, ts in h264_frames()[5:]:
        writer.write_video(data, ts, 2300 + ts * 1000 // 90_000)
    writer.close()
    facts = finalize(writer.path)
    assert facts.video_frames == 30 and facts.decodable
    with av.open(str(writer.path)) as c:
        sizes = {(f.width, f.height) for f in c.decode(c.streams.video[0])}
    assert sizes == {(WIDTH, HEIGHT)} and decode(writer.path)["video"] == 30


def test_a_torn_h264_file_keeps_its_playable_part(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path / "w.mkv", H264)
    feed(writer, video=h264_frames())
    writer.container.close()  # type: ignore[union-attr]  # flushed; torn below
    with av.open(str(writer.path)) as c:
        video = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    pos, size = video[20]
    torn = tmp_path / "torn.mkv"
    torn.write_bytes(writer.path.read_bytes()[: pos + size // 2])
    facts = finalize(torn)
    assert facts.decodable and 20 <= facts.video_frames <= 21
    assert decode(torn)["video"] == facts.video_frames


def test_a_segment_file_name_must_match_its_codec(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.mkv file"):
        SegmentWriter(tmp_path / "w.webm", H264)
