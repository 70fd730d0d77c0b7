"""A witness session's media on the node that owns it (A14, A15, A17.3, A19).

Each party holds one RTCPeerConnection (a *leg*) to this node. Every encoded frame a
party sends is tapped before aiortc would decode it (``hooks.tap_receiver``), written to
that party's recording segment and forwarded to the other party's leg
(``relay.ForwardTrack``). A party that reconnects gets a new leg and a new segment of the
same recording; all segments share the session clock (pts 0 = session start).

Database writes live behind ``MediaEvents`` so this module is about media only.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import av
import av.error
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)

from server.domain.errors import Conflict, InvalidInput, Unavailable
from server.media import hooks
from server.media.recorder import Cue, FileFacts, SegmentWriter, finalize, is_vp8_keyframe
from server.media.relay import ForwardTrack

log = logging.getLogger(__name__)

ROLES = ("investor", "witness")
OTHER = {"investor": "witness", "witness": "investor"}
KEYFRAME_REQUEST_GAP = 0.5  # seconds between keyframe requests to one party
STILL_TIMEOUT = 4.0


class MediaEvents(Protocol):
    """What the media layer tells the rest of the system (implemented over the DB)."""

    async def segment_opened(
        self, session_id: str, participant: str, segment: int, rel_path: str
    ) -> str: ...

    async def segment_closed(
        self, recording_id: str, facts: FileFacts | None, failure: str | None
    ) -> None: ...

    async def still_taken(
        self,
        session_id: str,
        participant: str,
        kind: str,
        rel_path: str,
        jpeg: bytes,
        offset_ms: int,
        actor: str,
    ) -> dict[str, Any]: ...

    async def event(
        self, session_id: str, offset_ms: int, kind: str, actor: str, payload: dict[str, Any]
    ) -> None: ...


@dataclass(frozen=True)
class MediaSettings:
    recordings_root: Path
    # The node's own ICE servers (urls, username, credential), asked per connection.
    ice_servers: Callable[[], list[dict[str, Any]]]
    record: bool = True
    keyframe_interval: float = 10.0


def _codec_preferences(kind: str) -> list[Any]:
    # VP8 and Opus only: the relay forwards frames unchanged, so both parties must
    # send what the other can decode, and the recording's container expects them.
    wanted = {"video": ("video/vp8", "video/rtx"), "audio": ("audio/opus",)}[kind]
    caps = RTCRtpSender.getCapabilities(kind).codecs
    return [c for c in caps if c.mimeType.lower() in wanted]


def _rtc_configuration(ice_servers: list[dict[str, Any]]) -> RTCConfiguration:
    # Never aiortc's default (a public Google STUN): only what the operator configured.
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in ice_servers
    ]
    # max-bundle: one ICE/DTLS transport per party (browsers bundle by default).
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def decode_still(keyframe: bytes) -> tuple[bytes, int, int]:
    """JPEG of one VP8 keyframe (blocking: run in a thread)."""
    decoder = av.CodecContext.create("vp8", "r")
    frames = decoder.decode(av.Packet(keyframe))
    if not frames:
        frames = decoder.decode(None)
    if not frames:
        raise ValueError("keyframe did not decode")
    image = frames[0].to_image()  # type: ignore[union-attr,no-untyped-call]
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue(), image.width, image.height


@dataclass
class Leg:
    role: str
    segment: int
    pc: RTCPeerConnection
    writer: SegmentWriter | None
    recording_id: str | None
    video_out: ForwardTrack
    audio_out: ForwardTrack
    video_receiver: RTCRtpReceiver | None = None
    last_keyframe_request: float = 0.0
    still_waiters: list[asyncio.Future[bytes]] = field(default_factory=list)
    frames_in: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    closed: bool = False


class MediaSession:
    def __init__(
        self,
        session_id: str,
        *,
        rel_dir: str,
        settings: MediaSettings,
        events: MediaEvents,
    ) -> None:
        self.session_id = session_id
        self.rel_dir = rel_dir
        self.settings = settings
        self.events = events
        self.origin = time.monotonic()  # the session clock's 0
        self.legs: dict[str, Leg] = {}
        self.next_segment = {role: 0 for role in ROLES}
        self.cues: list[Cue] = []
        self.auto_still_taken = False
        self._auto_pending = False
        self.closed = False
        self._closing: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing_legs: set[asyncio.Future[None]] = set()
        self._keyframe_task = asyncio.create_task(self._periodic_keyframes())

    def now_ms(self) -> int:
        return int((time.monotonic() - self.origin) * 1000)

    # ── legs ─────────────────────────────────────────────────────────────────────────
    async def connect(self, role: str, offer_sdp: str) -> str:
        """A party's (re)connection: answer its offer with a new leg and segment."""
        if role not in ROLES:
            raise InvalidInput("bad_role", "Unknown role.", "未知的角色。")
        if "m=video" not in offer_sdp and "m=audio" not in offer_sdp:
            raise InvalidInput("bad_offer", "The offer carries no media.", "连接请求中没有音视频。")
        if offer_sdp.count("m=video") > 1 or offer_sdp.count("m=audio") > 1:
            # One camera and one microphone per party; an extra track would be decoded
            # by aiortc into a queue nobody reads.
            raise InvalidInput(
                "bad_offer",
                "One audio and one video track per party.",
                "每方仅限一路音频和一路视频。",
            )
        async with self._lock:
            if self.closed:
                raise Conflict("session_over", "The session has ended.", "会话已结束。")
            old = self.legs.pop(role, None)
            if old is not None:
                # Closed in the background: finalizing a long segment must not delay the
                # party's rejoin (close() still waits for it).
                self._closing_legs.add(
                    asyncio.ensure_future(self._close_leg(old, reason="reconnected"))
                )
            leg = await self._open_leg(role)
            self.legs[role] = leg
        try:
            answer = await self._negotiate(leg, offer_sdp)
        except Exception as exc:
            async with self._lock:
                if self.legs.get(role) is leg:
                    del self.legs[role]
            await self._close_leg(leg, reason="negotiation_failed")
            if isinstance(exc, (ValueError, InvalidInput)):
                raise InvalidInput(
                    "bad_offer",
                    f"The browser's connection offer was refused: {exc}",
                    "浏览器的连接请求无法接受（需支持 VP8 视频和 Opus 音频）。",
                ) from exc
            raise
        await self.events.event(
            self.session_id, self.now_ms(), "media.connected", role, {"segment": leg.segment}
        )
        return answer

    async def _open_leg(self, role: str) -> Leg:
        segment = self.next_segment[role]
        self.next_segment[role] = segment + 1
        writer: SegmentWriter | None = None
        recording_id: str | None = None
        if self.settings.record:
            rel_path = f"{self.rel_dir}/{role}-{segment:02d}.webm"
            writer = SegmentWriter(self.settings.recordings_root / rel_path)
            recording_id = await self.events.segment_opened(
                self.session_id, role, segment, rel_path
            )
        pc = RTCPeerConnection(_rtc_configuration(self.settings.ice_servers()))
        other = OTHER[role]
        leg = Leg(
            role=role,
            segment=segment,
            pc=pc,
            writer=writer,
            recording_id=recording_id,
            # What this party receives: the other party's frames. A gap or a browser's
            # PLI asks the *other* party for a keyframe.
            video_out=ForwardTrack("video", need_keyframe=lambda: self._ask_keyframe(other)),
            audio_out=ForwardTrack("audio", need_keyframe=lambda: None),
        )

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "failed":
                # The browser restarts with a new offer; until then this leg is dead.
                await self.events.event(
                    self.session_id, self.now_ms(), "media.failed", role, {"segment": segment}
                )

        return leg

    async def _negotiate(self, leg: Leg, offer_sdp: str) -> str:
        pc = leg.pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        kinds = set()
        for transceiver in pc.getTransceivers():
            kind = transceiver.kind
            if kind in kinds or kind not in ("audio", "video"):
                continue  # one audio and one video per party
            kinds.add(kind)
            transceiver.setCodecPreferences(_codec_preferences(kind))
            hooks.tap_receiver(transceiver.receiver, self._sink(leg, kind))
            if kind == "video":
                leg.video_receiver = transceiver.receiver
            out = leg.video_out if kind == "video" else leg.audio_out
            pc.addTrack(out)
            if kind == "video":
                hooks.on_keyframe_request(
                    transceiver.sender, partial(self._ask_keyframe, OTHER[leg.role])
                )
        answer = await pc.createAnswer()
        if answer is None:
            raise ValueError("no answer")
        sdp = answer.sdp
        if "m=video" in sdp and "VP8" not in sdp:
            raise ValueError("the browser does not offer VP8 video")
        if "m=audio" in sdp and "opus" not in sdp.lower():
            raise ValueError("the browser does not offer Opus audio")
        await pc.setLocalDescription(answer)
        return pc.localDescription.sdp

    def _sink(self, leg: Leg, kind: str) -> hooks.FrameSink:
        def on_frame(codec: str, data: bytes, rtp_ts: int) -> None:
            try:
                handle(data, rtp_ts)
            except Exception:
                # Never into aiortc's receive loop: that would close the transport and
                # cut the call. The recorder has already marked itself failed if it was it.
                log.exception("media frame handling failed", extra={"session": self.session_id})

        def handle(data: bytes, rtp_ts: int) -> None:
            if leg.closed:
                return
            arrival = self.now_ms()
            leg.frames_in[kind] += 1
            peer = self.legs.get(OTHER[leg.role])
            if kind == "video":
                if leg.writer is not None:
                    if not leg.writer.started and not is_vp8_keyframe(data):
                        self._ask_keyframe(leg.role)
                    leg.writer.write_video(data, rtp_ts, arrival)
                if peer is not None:
                    peer.video_out.push(data, rtp_ts, leg)
                if is_vp8_keyframe(data):
                    self._keyframe_arrived(leg, data)
            else:
                if leg.writer is not None:
                    leg.writer.write_audio(data, rtp_ts, arrival)
                if peer is not None:
                    peer.audio_out.push(data, rtp_ts, leg)

        return on_frame

    def _keyframe_arrived(self, leg: Leg, data: bytes) -> None:
        waiters, leg.still_waiters = leg.still_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(data)
        if leg.role == "investor" and not self.auto_still_taken and not self._auto_pending:
            # A14/A19: a frontal photo at session start, without anyone asking.
            self._auto_pending = True
            self._spawn(self._auto_still(leg, data))

    async def _auto_still(self, leg: Leg, keyframe: bytes) -> None:
        try:
            await self._store_still(leg, keyframe, kind="auto", actor="system")
            self.auto_still_taken = True
        except ValueError:
            pass  # a damaged keyframe: the next one is tried
        finally:
            self._auto_pending = False

    def _ask_keyframe(self, role: str) -> None:
        leg = self.legs.get(role)
        if leg is None or leg.video_receiver is None or leg.closed:
            return
        now = time.monotonic()
        if now - leg.last_keyframe_request < KEYFRAME_REQUEST_GAP:
            return
        leg.last_keyframe_request = now
        self._spawn(hooks.request_keyframe(leg.video_receiver))

    async def _periodic_keyframes(self) -> None:
        # Periodic keyframes keep recordings seekable for the reviewer and let a
        # receiver recover from loss without waiting for its own request.
        while True:
            await asyncio.sleep(self.settings.keyframe_interval)
            for role in list(self.legs):
                self._ask_keyframe(role)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "media task failed",
                exc_info=task.exception(),
                extra={"session": self.session_id},
            )

    # ── cues and stills ──────────────────────────────────────────────────────────────
    def add_cue(self, start_ms: int, end_ms: int, text: str) -> None:
        """A script step shown between two instants of the session clock: written into
        every current recording of the session (the witness-console issue drives it)."""
        cue = Cue(start_ms, end_ms, text)
        self.cues.append(cue)
        for leg in self.legs.values():
            if leg.writer is not None:
                leg.writer.add_cue(cue)

    async def capture_still(self, role: str, *, kind: str, actor: str) -> dict[str, Any]:
        """A photo of ``role`` from the live stream, now (A14): ask for a keyframe and
        decode just that one frame."""
        leg = self.legs.get(role)
        if leg is None or leg.closed or leg.video_receiver is None:
            raise Unavailable("no_video", "No live video from that party.", "对方当前没有视频。")
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        leg.still_waiters.append(waiter)
        leg.last_keyframe_request = 0.0
        self._ask_keyframe(role)
        try:
            async with asyncio.timeout(STILL_TIMEOUT):
                keyframe = await waiter
        except TimeoutError:
            raise Unavailable(
                "still_timeout",
                "No picture arrived in time; try again.",
                "未能及时获取画面，请重试。",
            ) from None
        return await self._store_still(leg, keyframe, kind=kind, actor=actor)

    async def _store_still(
        self, leg: Leg, keyframe: bytes, *, kind: str, actor: str
    ) -> dict[str, Any]:
        offset = self.now_ms()
        jpeg, _w, _h = await asyncio.to_thread(decode_still, keyframe)
        rel_path = f"{self.rel_dir}/stills/{leg.role}-{offset:09d}-{kind}.jpg"
        return await self.events.still_taken(
            self.session_id, leg.role, kind, rel_path, jpeg, offset, actor
        )

    # ── ending ───────────────────────────────────────────────────────────────────────
    async def drop(self, role: str, reason: str) -> None:
        """The party is gone (socket closed, hung up): close its leg and segment."""
        async with self._lock:
            leg = self.legs.pop(role, None)
        if leg is not None:
            await self._close_leg(leg, reason=reason)

    async def close(self, reason: str) -> None:
        """Close both legs and finalize their files; every caller waits for the end."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close(reason))
        await asyncio.shield(self._closing)

    async def _close(self, reason: str) -> None:
        async with self._lock:
            self.closed = True
            legs = list(self.legs.values())
            self.legs.clear()
        self._keyframe_task.cancel()
        await asyncio.gather(
            *(self._close_leg(leg, reason=reason) for leg in legs), *self._closing_legs
        )
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, self._keyframe_task, return_exceptions=True)

    async def _close_leg(self, leg: Leg, *, reason: str) -> None:
        if leg.closed:
            return
        leg.closed = True  # first: a frame arriving from here on is ignored
        for waiter in leg.still_waiters:
            if not waiter.done():
                waiter.set_exception(
                    Unavailable("no_video", "The party's video ended.", "对方视频已中断。")
                )
        leg.video_out.stop()
        leg.audio_out.stop()
        with contextlib.suppress(Exception):
            await leg.pc.close()
        facts: FileFacts | None = None
        failure: str | None = None
        if leg.writer is not None:
            leg.writer.close()
            failure = leg.writer.failed
            if leg.writer.started:
                try:
                    facts = await asyncio.to_thread(finalize, leg.writer.path)
                except (av.error.FFmpegError, OSError) as exc:
                    failure = failure or f"finalize: {exc}"
        if leg.recording_id is not None:
            await self.events.segment_closed(leg.recording_id, facts, failure)
        await self.events.event(
            self.session_id,
            self.now_ms(),
            "media.disconnected",
            leg.role,
            {"segment": leg.segment, "reason": reason, "frames_in": dict(leg.frames_in)},
        )
