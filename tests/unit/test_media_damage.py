"""The damage account of a recording segment (issue 16; A15, A19), fed synthetic frame
sequences, and the jitter buffer watch that says how frames arrived."""

from __future__ import annotations

from typing import Any

import pytest
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from server.media import hooks
from server.media.damage import FRAME_INCOMPLETE, PACKETS_LOST, DamageLog, Stretch, union_ms
from server.media.hooks import receive


def _video(log: DamageLog, frames: list[tuple[int, bool, int]]) -> list[bool]:
    """(ms, keyframe, packets missing before it) per frame."""
    return [log.video(ms, key=k, packets_missing=m, incomplete=False) for ms, k, m in frames]


def test_a_clean_stream_has_no_damage() -> None:
    log = DamageLog()
    _video(log, [(i * 66, i % 30 == 0, 0) for i in range(100)])
    for i in range(300):
        log.audio(i * 20, packets_missing=0)
    report = log.report(6600)
    assert report.stretches == () and report.damaged_ms == 0 and report.frames_lost == 0


def test_video_is_damaged_from_the_loss_until_the_next_intact_keyframe() -> None:
    log = DamageLog()
    # Frames every 66 ms; two frames (132, 198) lost; delta frames until a keyframe at 528.
    frames = [(0, True, 0), (66, False, 0), (264, False, 3), (330, False, 0), (528, True, 0)]
    new_loss = _video(log, [*frames, (594, False, 0)])
    assert new_loss == [False, False, True, False, False, False]
    assert log.video_damaged is False
    report = log.report(594)
    assert report.stretches == (Stretch(67, 528 - 67, "video", PACKETS_LOST),)
    assert report.frames_lost == 2  # the 198 ms gap spans two frame slots
    assert report.damaged_ms == 461


def test_a_keyframe_after_the_gap_ends_the_stretch_at_once() -> None:
    log = DamageLog()
    _video(log, [(0, True, 0), (66, False, 0), (198, True, 2)])
    assert log.report(198).stretches == (Stretch(67, 131, "video", PACKETS_LOST),)


def test_an_incomplete_keyframe_does_not_end_the_stretch() -> None:
    log = DamageLog()
    _video(log, [(0, True, 0), (66, False, 4)])
    assert log.video_damaged
    assert log.video(132, key=True, packets_missing=0, incomplete=True) is True
    assert log.video_damaged  # a torn keyframe repairs nothing
    log.video(198, key=True, packets_missing=0, incomplete=False)
    assert log.report(198).stretches == (Stretch(1, 197, "video", PACKETS_LOST),)


def test_a_torn_frame_alone_is_damage_too() -> None:
    log = DamageLog()
    _video(log, [(0, True, 0), (66, False, 0)])
    log.video(132, key=False, packets_missing=0, incomplete=True)
    log.video(198, key=True, packets_missing=0, incomplete=False)
    report = log.report(198)
    assert report.stretches == (Stretch(132, 66, "video", FRAME_INCOMPLETE),)
    assert report.frames_lost == 1


def test_video_still_waiting_for_a_keyframe_at_the_close_is_damaged_to_the_end() -> None:
    log = DamageLog()
    _video(log, [(0, True, 0), (66, False, 0), (198, False, 1), (264, False, 0)])
    assert log.report(264).stretches == (Stretch(67, 198, "video", PACKETS_LOST),)


def test_audio_gaps_are_exactly_the_missing_frames() -> None:
    log = DamageLog()
    for ms, missing in [(0, 0), (20, 0), (40, 0), (100, 2), (120, 0), (200, 3), (220, 0)]:
        log.audio(ms, packets_missing=missing)
    report = log.report(220)
    assert report.stretches == (
        Stretch(60, 40, "audio", PACKETS_LOST),
        Stretch(140, 60, "audio", PACKETS_LOST),
    )
    assert report.frames_lost == 5 and report.damaged_ms == 100


def test_a_gap_the_clock_shortened_still_counts_every_missing_frame() -> None:
    """The frame after two lost ones placed 5 ms early on the session clock: the stretch
    is still the 40 ms that were lost, not the 35 ms the file's gap shows."""
    log = DamageLog()
    for ms, missing in [(0, 0), (20, 0), (40, 0), (95, 2), (115, 0)]:
        log.audio(ms, packets_missing=missing)
    report = log.report(115)
    assert report.stretches == (Stretch(60, 40, "audio", PACKETS_LOST),)
    assert report.frames_lost == 2 and report.damaged_ms == 40


def test_the_damaged_total_counts_overlapping_video_and_audio_once() -> None:
    log = DamageLog()
    for ms, missing in [(0, 0), (40, 1), (80, 1), (100, 0), (300, 9)]:
        log.audio(ms, packets_missing=missing)
    _video(log, [(0, True, 0), (66, False, 1), (132, True, 0)])
    report = log.report(300)
    assert report.stretches == (
        Stretch(1, 131, "video", PACKETS_LOST),
        Stretch(20, 20, "audio", PACKETS_LOST),
        Stretch(60, 20, "audio", PACKETS_LOST),
        Stretch(120, 180, "audio", PACKETS_LOST),
    )
    # The first two audio stretches lie inside the video one; the third overlaps it.
    assert report.damaged_ms == 299


def test_stretches_move_onto_the_file_clock_and_are_cut_to_it() -> None:
    log = DamageLog()
    _video(log, [(1000, True, 0), (1066, False, 2), (1132, False, 0)])
    report = log.report(1132)
    kept = report.within(first_ms=1000, duration_ms=132)
    assert [s.as_json(origin_ms=1000) for s in kept] == [
        {"start_ms": 1, "length_ms": 131, "kind": "video", "reason": PACKETS_LOST}
    ]
    assert union_ms(kept) == 131


# ── the jitter buffer watch ─────────────────────────────────────────────────────────
def _packet(seq: int, ts: int, *, start: bool = True, end: bool = True) -> RtpPacket:
    packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=ts, marker=int(end))
    packet.payload = bytes([0x10 if start else 0x00, 0x00])  # VP8 descriptor: S bit
    packet._data = packet.payload  # type: ignore[attr-defined]
    return packet


def _watched(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[Any], list[float]]:
    delivered: list[Any] = []
    clock = [0.0]
    monkeypatch.setattr(receive.time, "monotonic", lambda: clock[0])
    buffer = receive._WatchedJitterBuffer(
        JitterBuffer(capacity=512, is_video=True),
        lambda p: hooks.starts_frame("VP8", p.payload[:2]),
        delivered.append,
    )
    return buffer, delivered, clock


def test_frames_say_how_many_packets_were_missing_before_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    buffer, delivered, clock = _watched(monkeypatch)
    out = [buffer.add(_packet(s, s * 3000))[1] for s in (1, 2, 3)]
    assert [f.packets_missing for f in out if f is not None] == [0, 0]
    # Packet 4 is lost; 5 and 6 wait behind it, then the wait runs out.
    assert buffer.add(_packet(5, 15000))[1] is None
    clock[0] = hooks.LOSS_WAIT_SECONDS - 0.01
    assert buffer.add(_packet(6, 18000))[1] is None  # still waiting for a retransmission
    clock[0] = hooks.LOSS_WAIT_SECONDS + 0.01
    _pli, frame = buffer.add(_packet(7, 21000))
    # Frame 3 was whole (its marker bit says so) though 4, which would have shown it, was
    # lost: it leaves; 4's frame never came.
    frames = [f for f in [*delivered, frame] if f is not None]
    assert [f.timestamp for f in frames] == [9000, 15000, 18000]
    assert [f.packets_missing for f in frames] == [0, 1, 0]


def test_a_retransmission_in_time_loses_nothing_and_the_queue_leaves_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    buffer, delivered, _clock = _watched(monkeypatch)
    for s in (1, 2, 4, 5, 6):
        buffer.add(_packet(s, s * 3000))
    _pli, frame = buffer.add(_packet(3, 9000))  # the retransmission fills the gap
    frames = [f for f in [*delivered, frame] if f is not None]
    assert [f.timestamp for f in frames] == [6000, 9000, 12000, 15000]
    assert all(f.packets_missing == 0 for f in frames)


def test_a_frame_whose_head_was_lost_is_skipped_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    buffer, delivered, clock = _watched(monkeypatch)
    buffer.add(_packet(1, 3000))
    buffer.add(_packet(2, 6000))
    # The frame at 9000 spans 3..4; 3 (its head) is lost.
    buffer.add(_packet(4, 9000, start=False))
    buffer.add(_packet(5, 12000))
    clock[0] = 1.0
    buffer.add(_packet(6, 15000))
    _pli, frame = buffer.add(_packet(7, 18000))
    frames = [f for f in [*delivered, frame] if f is not None and f.timestamp > 6000]
    assert [f.timestamp for f in frames] == [12000, 15000]
    assert frames[0].packets_missing == 2  # 3 lost, 4 discarded with its torn frame


# ── audio: a lost packet costs its own frame, nothing more ──────────────────────────
class _Audio:
    """The watched buffer in place of aiortc's audio one (16 slots, prefetch 4), fed
    Opus packets 20 ms apart; ``frames`` is everything handed on, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.frames: list[Any] = []
        self.clock = 0.0
        monkeypatch.setattr(receive.time, "monotonic", lambda: self.clock)
        self.buffer = receive._WatchedJitterBuffer(
            JitterBuffer(capacity=16, prefetch=4), lambda _p: True, self.frames.append
        )

    def add(self, *seqs: int) -> None:
        for seq in seqs:
            packet = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960)
            packet.payload = b"\xfc" + seq.to_bytes(2, "big")
            packet._data = packet.payload  # type: ignore[attr-defined]
            pli, frame = self.buffer.add(packet)
            assert pli is False
            if frame is not None:
                self.frames.append(frame)
            self.clock += 0.02

    @property
    def seqs(self) -> list[int]:
        return [int.from_bytes(f.data[1:], "big") for f in self.frames]

    @property
    def missing(self) -> dict[int, int]:
        return {
            s: f.packets_missing
            for s, f in zip(self.seqs, self.frames, strict=True)
            if f.packets_missing
        }


def test_one_lost_audio_packet_costs_one_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    audio = _Audio(monkeypatch)
    audio.add(*range(100, 110))
    assert audio.seqs == list(range(100, 106))  # 4 held back: aiortc's prefetch, its delay
    audio.add(111, 112)  # 110 is lost: the queue waits for it
    assert audio.seqs == list(range(100, 106))
    audio.add(113)  # three behind the gap: given up; the frames before it leave
    assert audio.seqs == list(range(100, 110))
    audio.add(*range(114, 140))
    assert audio.seqs == [s for s in range(100, 136) if s != 110]
    assert audio.missing == {111: 1}
    assert [f.timestamp for f in audio.frames] == [s * 960 for s in audio.seqs]
    assert [f.data for f in audio.frames][:2] == [b"\xfc\x00\x64", b"\xfc\x00\x65"]


def test_a_reordered_audio_packet_within_the_wait_costs_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    audio = _Audio(monkeypatch)
    audio.add(*range(100, 110), 111, 112, 110, *range(113, 120), 121, 120, *range(122, 130))
    assert audio.seqs == list(range(100, 126)) and audio.missing == {}


def test_a_burst_of_three_lost_is_three_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    audio = _Audio(monkeypatch)
    audio.add(*range(100, 110), *range(113, 130))
    assert audio.seqs == [s for s in range(100, 126) if not 110 <= s <= 112]
    assert audio.missing == {113: 3}


def test_two_gaps_close_together_are_counted_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    audio = _Audio(monkeypatch)
    audio.add(*range(100, 110), 111, 113, *range(114, 130))
    assert audio.seqs == [s for s in range(100, 126) if s not in (110, 112)]
    assert audio.missing == {111: 1, 113: 1}


def test_audio_sequence_numbers_wrap(monkeypatch: pytest.MonkeyPatch) -> None:
    audio = _Audio(monkeypatch)
    before = list(range(65520, 65536))
    audio.add(*before[:-1], *range(0, 20))  # 65535 lost, just before the wrap
    assert audio.seqs == [*before[:-1], *range(0, 16)]
    assert audio.missing == {0: 1}
    audio.add(21, 22, 23, *range(24, 30))  # 20 lost, after it
    assert audio.seqs[-9:] == [16, 17, 18, 19, 21, 22, 23, 24, 25]
    assert audio.missing == {0: 1, 21: 1}


def test_a_late_audio_packet_after_the_wait_is_dropped_not_counted_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    audio = _Audio(monkeypatch)
    audio.add(*range(100, 110), 111, 112, 113, 110, *range(114, 120))
    assert audio.seqs == [s for s in range(100, 116) if s != 110]
    assert audio.missing == {111: 1}


def test_a_slow_audio_stream_waits_by_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Packets far apart (Opus DTX in silence): the wait ends by the clock, not by count.
    audio = _Audio(monkeypatch)
    audio.add(*range(100, 110), 111)
    audio.clock += hooks.AUDIO_LOSS_WAIT_SECONDS
    audio.add(112)
    assert audio.seqs == list(range(100, 110)) and audio.missing == {}
    audio.add(*range(113, 120))
    assert audio.missing == {111: 1}


def test_an_audio_jump_hands_the_queue_on_first(monkeypatch: pytest.MonkeyPatch) -> None:
    audio = _Audio(monkeypatch)
    audio.add(*range(100, 110), 500, *range(501, 510))  # 390 never came (an outage)
    assert audio.seqs == [*range(100, 110), *range(500, 506)]
    assert audio.missing == {500: 390}
    audio.add(40000, *range(40001, 40010))  # far behind: the sender started again
    assert audio.seqs == [*range(100, 110), *range(500, 510), *range(40000, 40006)]
    assert 40000 not in audio.missing  # a restart is not a loss


@pytest.mark.parametrize(
    ("codec", "head", "start"),
    [
        ("VP8", b"\x10\x00", True),
        ("VP8", b"\x00\x00", False),  # continuation
        ("VP8", b"\x11\x00", False),  # a later partition
        ("H264", b"\x7c\x85", True),  # FU-A with S
        ("H264", b"\x7c\x05", False),  # FU-A continuation
        ("H264", b"\x67\x42", True),  # a single NAL unit
        ("opus", b"\xfc\xff", True),
        ("VP8", b"", False),
    ],
)
def test_frame_starts(codec: str, head: bytes, start: bool) -> None:
    assert hooks.starts_frame(codec, head) is start
