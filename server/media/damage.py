"""Where a recording is damaged by loss (issue 16; A15, A19: the recording must say where
it is not what the party sent).

Pure bookkeeping, fed one call per frame written to a segment, on the session clock:

- **video**: a stretch begins at the first frame that is missing (RTP packets missing
  before a frame: the frames they carried never arrived) or written incomplete, and lasts
  until the next keyframe that arrives intact. Every delta frame in between refers,
  directly or not, to the missing picture: it decodes "without errors" but shows the
  wrong picture, so it belongs to the stretch.
- **audio**: Opus frames are independent; a stretch is exactly the missing frames (one
  RTP packet each), from where the previous frame ended to where the next one begins,
  and never shorter than the missing frames last.

No I/O and no aiortc here: ``server/media/hooks`` says how each frame arrived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["video", "audio"]

# A missing packet's frame never reaches the decoder queue; the ones after it, if delta
# frames, refer to it.
PACKETS_LOST = "packets_lost"
# A frame whose first packets were discarded by the jitter buffer was written anyway.
FRAME_INCOMPLETE = "frame_incomplete"
DEFAULT_VIDEO_INTERVAL_MS = 66  # 15 fps, until the stream shows its own spacing
DEFAULT_AUDIO_FRAME_MS = 20  # Opus as browsers send it


@dataclass(frozen=True)
class Stretch:
    start_ms: int
    length_ms: int
    kind: Kind
    reason: str

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.length_ms

    def as_json(self, origin_ms: int = 0) -> dict[str, Any]:
        """The stored form; ``origin_ms`` moves it onto another clock (the file's own)."""
        return {
            "start_ms": self.start_ms - origin_ms,
            "length_ms": self.length_ms,
            "kind": self.kind,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class DamageReport:
    stretches: tuple[Stretch, ...]
    damaged_ms: int  # the union of all stretches, video and audio together
    frames_lost: int  # video frames (estimated from RTP timestamps) and Opus frames missing

    def within(self, first_ms: int, duration_ms: int) -> list[Stretch]:
        """The stretches cut to a file whose first frame is at ``first_ms`` and which
        lasts ``duration_ms`` (a stretch open at the close runs to the file's end)."""
        out = []
        for s in self.stretches:
            start = max(s.start_ms, first_ms)
            end = min(s.end_ms, first_ms + max(duration_ms, 1))
            if end > start:
                out.append(Stretch(start, end - start, s.kind, s.reason))
        return out


def _merge(stretches: list[Stretch]) -> list[Stretch]:
    """Overlapping or touching stretches of one kind become one (the first's reason)."""
    out: list[Stretch] = []
    for s in sorted(stretches, key=lambda s: (s.kind, s.start_ms)):
        last = out[-1] if out else None
        if last is not None and last.kind == s.kind and s.start_ms <= last.end_ms:
            end = max(last.end_ms, s.end_ms)
            out[-1] = Stretch(last.start_ms, end - last.start_ms, last.kind, last.reason)
        else:
            out.append(s)
    return sorted(out, key=lambda s: (s.start_ms, s.kind))


def union_ms(stretches: list[Stretch]) -> int:
    total = 0
    reach: int | None = None
    for s in sorted(stretches, key=lambda s: s.start_ms):
        start = s.start_ms if reach is None else max(s.start_ms, reach)
        if s.end_ms > start:
            total += s.end_ms - start
        reach = s.end_ms if reach is None else max(reach, s.end_ms)
    return total


@dataclass
class DamageLog:
    """One segment's account of its damage; not thread-safe (the event loop feeds it)."""

    stretches: list[Stretch] = field(default_factory=list)
    frames_lost: int = 0
    _video_ms: int | None = None  # the last video frame written
    _video_interval: int = DEFAULT_VIDEO_INTERVAL_MS
    _video_open: tuple[int, str] | None = None  # (start, reason) of the stretch going on
    _audio_ms: int | None = None
    _audio_frame: int = DEFAULT_AUDIO_FRAME_MS

    @property
    def video_damaged(self) -> bool:
        """Video is damaged now: the next intact keyframe ends it (ask for one)."""
        return self._video_open is not None

    def video(self, ms: int, *, key: bool, packets_missing: int, incomplete: bool) -> bool:
        """A video frame written at ``ms``. True if it revealed a new loss."""
        prev = self._video_ms
        self._video_ms = ms
        if prev is not None and ms > prev and not packets_missing:
            self._video_interval = ms - prev
        new_loss = packets_missing > 0 or incomplete
        if new_loss:
            if packets_missing:
                # The missing packets belonged to at least one frame; the RTP clock says
                # how many frame slots the gap spans.
                gap = ms - prev if prev is not None else 0
                slots = round(gap / max(1, self._video_interval)) - 1
                self.frames_lost += max(1, slots)
            if incomplete:
                self.frames_lost += 1  # written, but not as sent
            reason = PACKETS_LOST if packets_missing else FRAME_INCOMPLETE
            # Missing frames sat after the previous one; an incomplete one is damaged itself.
            start = prev + 1 if packets_missing and prev is not None and prev < ms else ms
            if self._video_open is None:
                self._video_open = (start, reason)
        if self._video_open is not None and key and not incomplete:
            start, reason = self._video_open
            self._video_open = None
            if ms > start:
                self.stretches.append(Stretch(start, ms - start, "video", reason))
        return new_loss

    def audio(self, ms: int, *, packets_missing: int) -> bool:
        """An Opus frame written at ``ms``. True if frames were missing before it."""
        prev = self._audio_ms
        self._audio_ms = ms
        if not packets_missing:
            if prev is not None and 0 < ms - prev <= 120:  # Opus frames last 2.5–120 ms
                self._audio_frame = ms - prev
            return False
        self.frames_lost += packets_missing
        if prev is not None and ms > prev:
            start = prev + self._audio_frame
            # Never less than the frames missing: the session clock may place the frame
            # after the gap a few ms early (recorder._TrackClock, when a packet shows a
            # shorter delay than any before), which shortens the gap in the file but not
            # what was lost (a CI run: 17 lost Opus packets accounted as 335 ms).
            length = max(ms - start, packets_missing * self._audio_frame)
        else:
            length = packets_missing * self._audio_frame
            start = ms - length
        self.stretches.append(Stretch(start, length, "audio", PACKETS_LOST))
        return True

    def report(self, end_ms: int) -> DamageReport:
        """The account when the segment closes at ``end_ms`` (its last frame): a video
        stretch no keyframe ended runs to the end."""
        stretches = list(self.stretches)
        if self._video_open is not None:
            start, reason = self._video_open
            stretches.append(Stretch(start, max(end_ms + 1 - start, 1), "video", reason))
        merged = _merge(stretches)
        return DamageReport(tuple(merged), union_ms(merged), self.frames_lost)
