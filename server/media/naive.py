"""aiortc's textbook media path, kept only as the load benchmark's baseline (issue 9).

What most aiortc servers do: every receiver decodes, ``MediaRelay`` hands the decoded
frames to the other party's sender, which encodes them again, and ``MediaRecorder``
encodes a third copy (x264 + AAC in MP4) for the recording. ``media.pipeline = "naive"``
selects it so ``python -m bench.load`` can measure it beside the passthrough path
(session.py) in the same run, through the same queue, signalling and sockets.

Not for production: its recordings are plain files next to where the real ones go, not
registered for review or hashed, and a party that rejoins restarts its timestamps.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from dataclasses import replace
from typing import Any

import av
from aiortc import RTCSessionDescription
from aiortc.contrib.media import MediaRecorder, MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.domain.errors import Unavailable
from server.media.session import (
    OTHER,
    Leg,
    MediaEvents,
    MediaSession,
    MediaSettings,
    _codec_preferences,
)

log = logging.getLogger(__name__)


class _Follow(MediaStreamTrack):
    """A party's outgoing track: whatever the other party's current receiver decodes."""

    def __init__(self, kind: str, session: NaiveSession, role: str) -> None:
        super().__init__()
        self.kind = kind
        self._session = session
        self._role = role  # whose frames this track carries
        self._proxy: MediaStreamTrack | None = None
        self._source: MediaStreamTrack | None = None

    async def recv(self) -> Any:
        while self.readyState == "live":
            source = self._session.remote.get((self._role, self.kind))
            if source is None:
                await asyncio.sleep(0.02)
                continue
            if source is not self._source:
                if self._proxy is not None:
                    self._proxy.stop()  # the relay stops feeding the old subscription
                self._source = source
                self._proxy = self._session.relay.subscribe(source, buffered=False)
            assert self._proxy is not None
            try:
                return await self._proxy.recv()
            except MediaStreamError:
                self._source = None
                await asyncio.sleep(0.02)
        raise MediaStreamError


class NaiveSession(MediaSession):
    def __init__(
        self,
        session_id: str,
        *,
        rel_dir: str,
        settings: MediaSettings,
        events: MediaEvents,
    ) -> None:
        # The parent's recorder is switched off: MediaRecorder records here instead.
        super().__init__(
            session_id, rel_dir=rel_dir, settings=replace(settings, record=False), events=events
        )
        self.record = settings.record
        self.relay = MediaRelay()
        self.remote: dict[tuple[str, str], MediaStreamTrack] = {}
        self._recorders: dict[int, MediaRecorder] = {}

    async def _negotiate(self, leg: Leg, offer_sdp: str) -> str:
        pc = leg.pc
        tracks: list[MediaStreamTrack] = []

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            # aiortc decodes every received frame; this is the cost being measured.
            tracks.append(track)
            self.remote[(leg.role, track.kind)] = track

        # As session.py: transceivers with preferences before the offer, so they count.
        for kind in ("audio", "video"):
            if f"m={kind}" in offer_sdp:
                transceiver = pc.addTransceiver(
                    _Follow(kind, self, OTHER[leg.role]), direction="sendrecv"
                )
                transceiver.setCodecPreferences(_codec_preferences(kind))
                if kind == "video":
                    leg.video_receiver = transceiver.receiver
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        answer = await pc.createAnswer()
        if answer is None:
            raise ValueError("no answer")
        await pc.setLocalDescription(answer)
        if self.record and tracks:
            path = (
                self.settings.recordings_root
                / self.rel_dir
                / f"naive-{leg.role}-{leg.segment:02d}.mp4"
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            recorder = MediaRecorder(str(path))
            for track in tracks:
                recorder.addTrack(self.relay.subscribe(track, buffered=False))
            await recorder.start()
            self._recorders[id(leg)] = recorder
        return str(pc.localDescription.sdp)

    async def capture_still(self, role: str, *, kind: str, actor: str) -> dict[str, Any]:
        source = self.remote.get((role, "video"))
        if source is None:
            raise Unavailable("no_video", "No live video from that party.", "对方当前没有视频。")
        proxy = self.relay.subscribe(source, buffered=False)
        try:
            frame = await asyncio.wait_for(proxy.recv(), 4.0)
        finally:
            proxy.stop()
        if not isinstance(frame, av.VideoFrame):
            raise Unavailable("no_video", "No live video from that party.", "对方当前没有视频。")
        buf = io.BytesIO()
        frame.to_image().save(buf, format="JPEG", quality=90)  # type: ignore[no-untyped-call]
        rel_path = f"{self.rel_dir}/stills/{role}-{self.now_ms():09d}-{kind}.jpg"
        return await self.events.still_taken(
            self.session_id, role, kind, rel_path, buf.getvalue(), self.now_ms(), actor
        )

    async def _close_leg(self, leg: Leg, *, reason: str) -> None:
        recorder = self._recorders.pop(id(leg), None)
        if recorder is not None:
            with contextlib.suppress(Exception):
                await recorder.stop()
        if self.legs.get(leg.role) is None:  # not replaced by a rejoin: its tracks are gone
            for kind in ("audio", "video"):
                self.remote.pop((leg.role, kind), None)
        await super()._close_leg(leg, reason=reason)


def count_frames(path: str) -> tuple[int, int]:
    """Video and audio frames that decode in a naive-mode recording (benchmark check)."""
    counts = {"video": 0, "audio": 0}
    with av.open(path) as container:
        for frame in container.decode(*container.streams.video, *container.streams.audio):
            counts["video" if isinstance(frame, av.VideoFrame) else "audio"] += 1
    return counts["video"], counts["audio"]
