"""One participant's recording segment: the encoded video (VP8, or H.264 from a browser
without VP8) and Opus frames exactly as the party sent them, muxed into WebM (Matroska
for H.264, which WebM cannot hold) and flushed per packet (A15, A19; DESIGN: Media).

No decoding, no encoding: the evidence is the bytes the investor's browser produced, and
copying them costs a fraction of what re-encoding would (WEBRTC-NOTES). Every file of a
session shares one clock, pts 0 = session start, so the investor's and the witness's
files line up when played side by side.

Script steps are written as WebVTT cues to a sidecar file as they happen (a sparse live
subtitle track would stall the muxer's interleaving, and with it the per-packet flush);
``finalize`` stream-copies the cues into the file when it closes, and after a crash.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import av
import av.error
from av.stream import Stream

from server.media.codecs import VP8, VideoCodec, codec_for_path
from server.media.damage import DamageLog, DamageReport, union_ms

log = logging.getLogger(__name__)

MS = Fraction(1, 1000)
VIDEO_RATE = 90_000  # RTP clock of VP8 and H.264
AUDIO_RATE = 48_000  # RTP clock of Opus
# Audio that arrives before the first video keyframe is held this long (a file starts on
# a keyframe); a party whose camera never sends one is still recorded after it.
AUDIO_HOLD_MS = 2_000
# Flush audio even while video is paused (camera off): a crash then loses at most this.
MAX_INTERLEAVE_US = 500_000
# Longest stretch of media held in memory before it reaches the disk (crash loss bound).
CLUSTER_MS = 500


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    text: str


def _vtt_time(ms: int) -> str:
    ms = max(0, ms)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, rest = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{rest:03d}"


def append_cue(vtt_path: Path, cue: Cue) -> None:
    """Append one cue to the sidecar and flush it to disk (it must survive a crash)."""
    new = not vtt_path.exists()
    text = " ".join(cue.text.replace("-->", "→").split())  # one line, no cue syntax
    with vtt_path.open("a", encoding="utf-8") as fh:
        if new:
            fh.write("WEBVTT\n\n")
        end = max(cue.end_ms, cue.start_ms + 1)
        fh.write(f"{_vtt_time(cue.start_ms)} --> {_vtt_time(end)}\n{text}\n\n")
        fh.flush()
        os.fsync(fh.fileno())


class _TrackClock:
    """Maps one track's RTP timestamps (rebased to 0 by aiortc) onto the session clock.

    A frame is placed at its capture time as the sender's timestamps give it, shifted by
    the least delay seen so far on the way in (arrival minus timestamp): frames keep the
    sender's spacing, and none is placed later than it arrived. Anchoring on the first
    frame alone placed a whole segment late by however long that frame was held (a
    sender catching up after a stall, a first keyframe slow to arrive): the segment then
    ran ahead of the session clock, past the moment its party dropped, over the next
    segment and off the prompts' cues (A17.4: what was said against what was asked).
    When a frame shows the delay to be shorter, the frames after it follow at once; the
    frames already written keep their place (the file cannot move them back), so a burst
    of frames after a held one is as short on the timeline as it was on arrival."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.offset_ms: int | None = None
        self.last_ms = -1

    def to_ms(self, rtp_ts: int, arrival_ms: int) -> int:
        media_ms = rtp_ts * 1000 // self.rate
        delay = arrival_ms - media_ms
        if self.offset_ms is None or delay < self.offset_ms:
            self.offset_ms = delay
        ms = self.offset_ms + media_ms
        # Matroska needs non-decreasing timestamps per track; a reordered or duplicated
        # timestamp is nudged forward by a millisecond rather than dropped.
        ms = max(ms, self.last_ms + 1)
        self.last_ms = ms
        return ms


class SegmentWriter:
    """Writes one segment file; not thread-safe (the event loop calls it). The file name
    ends in the codec's suffix: ``finalize`` and crash recovery go by it."""

    def __init__(self, path: Path, codec: VideoCodec = VP8) -> None:
        if path.suffix != codec.suffix:
            raise ValueError(f"a {codec.name} segment is a {codec.suffix} file, not {path.name}")
        self.path = path
        self.codec = codec
        self.vtt_path = path.with_suffix(".vtt")
        self.container: av.container.OutputContainer | None = None
        self.video_stream: Stream | None = None
        self.audio_stream: Stream | None = None
        self.video = _TrackClock(VIDEO_RATE)
        self.audio = _TrackClock(AUDIO_RATE)
        self.held_audio: deque[tuple[bytes, int]] = deque()
        self.video_frames = 0
        self.audio_frames = 0
        self.first_ms: int | None = None
        self.last_ms = 0
        self.closed = False
        self.opened = False
        self.video_started = False
        self.failed: str | None = None
        # Issue 16: where what is written is not what the party sent (loss on the way).
        self.damage = DamageLog()

    # ── media ────────────────────────────────────────────────────────────────────────
    def _open(self, keyframe: bytes | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(
            str(self.path),
            "w",
            format=self.codec.container,
            options={
                "flush_packets": "1",
                "max_interleave_delta": str(MAX_INTERLEAVE_US),
                # The muxer holds a whole cluster in memory (default up to 5 s): short
                # clusters put every packet on disk within half a second.
                "cluster_time_limit": str(CLUSTER_MS),
            },
        )
        video = self.codec.mux_stream(container, keyframe)
        video.time_base = MS
        self.video_stream = video
        # Opus in Matroska needs an OpusHead in the track header: a stream backed by an
        # (unused) libopus encoder writes one; no audio is ever encoded through it.
        audio = container.add_stream("libopus", rate=AUDIO_RATE, layout="stereo")
        audio.time_base = MS
        self.audio_stream = audio
        container.start_encoding()
        self.container = container
        self.opened = True

    def _mux(self, stream: Stream | None, data: bytes, ms: int, key: bool) -> None:
        assert self.container is not None and stream is not None
        packet = av.Packet(data)
        packet.stream = stream
        packet.pts = packet.dts = ms
        packet.time_base = MS
        packet.is_keyframe = key
        self.container.mux(packet)
        if self.first_ms is None:
            self.first_ms = ms
        self.last_ms = max(self.last_ms, ms)

    def write_video(
        self,
        data: bytes,
        rtp_ts: int,
        arrival_ms: int,
        *,
        packets_missing: int = 0,
        incomplete: bool = False,
    ) -> None:
        """One video frame; ``packets_missing`` and ``incomplete`` say how it arrived
        (``hooks.Arrival``) and go into the segment's damage account."""
        if self.closed or self.failed:
            return
        key = self.codec.is_keyframe(data)
        if not self.video_started:
            if not key or incomplete:
                return  # video starts on an intact keyframe; the caller asks for one
            if not self.opened:
                self._guard(partial(self._open, data))
                if not self.opened:
                    return
            self.video_started = True
            packets_missing = 0  # loss before the file's first picture is not in it
        ms = self.video.to_ms(rtp_ts, arrival_ms)
        if self.held_audio:
            self._release_audio(keep_from=ms)
        self._guard(lambda: self._mux(self.video_stream, data, ms, key))
        self.video_frames += 1
        self.damage.video(ms, key=key, packets_missing=packets_missing, incomplete=incomplete)

    def write_audio(
        self, data: bytes, rtp_ts: int, arrival_ms: int, *, packets_missing: int = 0
    ) -> None:
        if self.closed or self.failed:
            return
        ms = self.audio.to_ms(rtp_ts, arrival_ms)
        if self.opened or self.held_audio:
            # Audio missing before the first frame held is not in the file.
            self.damage.audio(ms, packets_missing=packets_missing)
        if not self.opened:
            self.held_audio.append((data, ms))
            if ms - self.held_audio[0][1] < AUDIO_HOLD_MS:
                return
            self._guard(partial(self._open, None))  # no keyframe in time: keep the voice
            if self.opened:
                self._release_audio(keep_from=None)
            return
        self._guard(lambda: self._mux(self.audio_stream, data, ms, True))
        self.audio_frames += 1

    def _release_audio(self, keep_from: int | None) -> None:
        while self.held_audio:
            data, ms = self.held_audio.popleft()
            if keep_from is not None and ms < keep_from:
                continue
            self._guard(partial(self._mux, self.audio_stream, data, ms, True))
            self.audio_frames += 1

    def _guard(self, action: Callable[[], None]) -> None:
        try:
            action()
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            # The recording is evidence: stop writing (keeping what is on disk) and let
            # the session report it, rather than carry on with a corrupt file.
            self.failed = f"{type(exc).__name__}: {exc}"
            log.error(
                "recording write failed", extra={"file": self.path.name, "error": self.failed}
            )

    def add_cue(self, cue: Cue) -> None:
        if not self.closed:
            append_cue(self.vtt_path, cue)

    @property
    def started(self) -> bool:
        """Whether the file was ever opened (stays true after ``close``)."""
        return self.opened

    def damage_report(self) -> DamageReport:
        """The segment's damage on the session clock, up to its last frame."""
        return self.damage.report(self.last_ms)

    def close(self) -> None:
        """Close the container cleanly. Idempotent; later writes are ignored (a late
        keyframe must never reopen and truncate a finished file)."""
        if self.closed:
            return
        self.closed = True
        self.held_audio.clear()
        if self.container is not None:
            try:
                self.container.close()
            except (av.error.FFmpegError, OSError) as exc:
                self.failed = self.failed or f"close: {exc}"
            self.container = None


@dataclass(frozen=True)
class FileFacts:
    bytes: int
    sha256: str
    start_ms: int
    duration_ms: int
    video_frames: int
    audio_frames: int
    cues: int
    decodable: bool
    # Issue 16: damaged stretches on the file's own clock (ms from its first frame), their
    # union, and frames missing; None / 0 when not measured (a file finalized after a crash).
    damage: list[dict[str, Any]] | None = None
    damaged_ms: int = 0
    frames_lost: int = 0


def _read_cues(vtt_path: Path) -> list[Cue]:
    if not vtt_path.exists():
        return []
    cues: list[Cue] = []
    blocks = vtt_path.read_text(encoding="utf-8", errors="replace").split("\n\n")
    for block in blocks:
        lines = [ln for ln in block.strip().splitlines() if ln]
        if len(lines) < 2 or "-->" not in lines[0]:
            continue
        start, end = (part.strip() for part in lines[0].split("-->", 1))
        try:
            cues.append(Cue(_parse_vtt_time(start), _parse_vtt_time(end), " ".join(lines[1:])))
        except ValueError:
            continue  # a cue torn by a crash
    return cues


def _parse_vtt_time(text: str) -> int:
    hms, _, frac = text.partition(".")
    h, m, s = (int(x) for x in hms.split(":"))
    return ((h * 60 + m) * 60 + s) * 1000 + int(frac.ljust(3, "0")[:3])


def sha256_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def finalize(path: Path, damage: DamageReport | None = None) -> FileFacts:
    """Rewrite a closed (or crash-truncated) segment by stream copy: the same packets,
    plus the sidecar's cues as a WebVTT track, with a proper index and duration. Reads
    until the first damaged packet, so a torn tail costs only that packet. Blocking: run
    it in a thread. Returns the facts to store and hash-chain, with ``damage`` (the
    writer's account, on the session clock) moved onto the file's own clock."""
    vtt_path = path.with_suffix(".vtt")
    cues = _read_cues(vtt_path)
    container_format = codec_for_path(path).container
    tmp = path.with_name(path.stem + ".final" + path.suffix)
    video_frames = audio_frames = 0
    first: int | None = None
    last = 0
    try:
        source = av.open(str(path), "r")
    except (av.error.FFmpegError, OSError):
        source = None
    if source is None:
        # Nothing playable (crashed before the header reached disk).
        size, digest = sha256_file(path) if path.exists() else (0, hashlib.sha256().hexdigest())
        return FileFacts(size, digest, 0, 0, 0, 0, len(cues), decodable=False)
    with source:
        out = av.open(str(tmp), "w", format=container_format)
        try:
            mapping = {}
            for stream in source.streams:
                if stream.type in ("video", "audio"):
                    mapping[stream.index] = out.add_stream_from_template(stream)
            sub: Stream | None = out.add_mux_stream("webvtt") if cues else None
            if sub is not None:
                sub.time_base = MS
            out.start_encoding()
            pending = deque(sorted(cues, key=lambda c: c.start_ms))

            def flush_cues(until_ms: int | None) -> None:
                while pending and (until_ms is None or pending[0].start_ms <= until_ms):
                    cue = pending.popleft()
                    packet = av.Packet(cue.text.encode("utf-8"))
                    assert sub is not None
                    packet.stream = sub
                    packet.pts = packet.dts = cue.start_ms
                    packet.duration = max(1, cue.end_ms - cue.start_ms)
                    packet.time_base = MS
                    out.mux(packet)

            try:
                for packet in source.demux(*[source.streams[i] for i in mapping]):
                    if packet.dts is None or packet.size == 0:
                        continue
                    ms = int(packet.pts * packet.time_base * 1000) if packet.pts is not None else 0
                    if sub is not None:
                        flush_cues(ms)
                    if packet.stream.type == "video":
                        video_frames += 1
                    else:
                        audio_frames += 1
                    first = ms if first is None else min(first, ms)
                    last = max(last, ms)
                    packet.stream = mapping[packet.stream.index]
                    out.mux(packet)
            except (av.error.FFmpegError, EOFError) as exc:
                log.warning("recording truncated", extra={"file": path.name, "error": str(exc)})
            if sub is not None:
                flush_cues(None)
        finally:
            out.close()
    os.replace(tmp, path)
    with path.open("rb+") as fh:
        os.fsync(fh.fileno())
    vtt_path.unlink(missing_ok=True)
    size, digest = sha256_file(path)
    start_ms = first or 0
    duration_ms = (last - first) if first is not None else 0
    kept = [] if damage is None else damage.within(start_ms, duration_ms)
    return FileFacts(
        bytes=size,
        sha256=digest,
        start_ms=start_ms,
        duration_ms=duration_ms,
        video_frames=video_frames,
        audio_frames=audio_frames,
        cues=len(cues),
        decodable=_first_frames_decode(path, video=video_frames > 0, audio=audio_frames > 0),
        damage=None if damage is None else [s.as_json(origin_ms=start_ms) for s in kept],
        damaged_ms=union_ms(kept),
        frames_lost=damage.frames_lost if damage is not None else 0,
    )


def _first_frames_decode(path: Path, *, video: bool, audio: bool) -> bool:
    """The first frame of each stream that has packets decodes."""
    for kind, wanted in (("video", video), ("audio", audio)):
        if not wanted:
            continue
        try:
            with av.open(str(path)) as container:
                streams = getattr(container.streams, kind)
                if not streams or next(iter(container.decode(streams[0])), None) is None:
                    return False
        except (av.error.FFmpegError, EOFError):
            return False
    return video or audio
