"""A witness session's media on the node that owns it (A14, A15, A17.3, A19).

Each party holds one RTCPeerConnection (a *leg*) to this node. Every encoded frame a
party sends is tapped before aiortc would decode it (``hooks.tap_receiver``), written to
that party's recording segment and forwarded to the other party's leg
(``relay.ForwardTrack``; transcoded only when the two legs' video codecs differ). A party
that reconnects gets a new leg and a new segment of the same recording; all segments
share the session clock (pts 0 = session start).

Database writes live behind ``MediaEvents`` so this module is about media only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    RTCRtpCodecCapability,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.exceptions import OperationError
from aiortc.rtp import RtpPacket

from server.domain.errors import Conflict, InvalidInput, Unavailable
from server.domain.recording import StillKind
from server.media import hooks
from server.media.codecs import H264, VP8, VideoCodec, choose_video_codec
from server.media.recorder import Cue, FileFacts, SegmentWriter, finalize
from server.media.relay import TRANSCODE, ForwardTrack, relay_mode
from server.media.stills import Gop, StillMiss, StillSource, decode_last, decode_still

__all__ = ["MediaEvents", "MediaSession", "MediaSettings", "decode_still"]

log = logging.getLogger(__name__)

ROLES = ("investor", "witness")
OTHER = {"investor": "witness", "witness": "investor"}
KEYFRAME_REQUEST_GAP = 0.5  # seconds between keyframe requests to one party

# Stills (A14; issue 17). The witness gets a picture, or the reason there is none, within
# STILL_TIMEOUT of asking (unchanged: the desk says "try again" after it). Meanwhile the
# keyframe request (PLI and FIR) is sent again every STILL_ASK_EVERY, since one RTCP
# packet may be lost; a keyframe that arrived at most STILL_RECENT before the request is
# the picture of that moment and is taken at once (the witness's own reaction is slower,
# and asking the party for another costs it a bitrate spike for nothing). If no keyframe
# has come STILL_FALLBACK_AFTER into the wait, the leg's latest keyframe and the frames
# after it are decoded up to the newest (the picture of now; field arrivals ran to 2.9 s,
# so most stills still come from a fresh keyframe, and the decode, ≤ 450 frames, fits in
# the time left). A kept picture older than STILL_MAX_AGE before the request is not a
# still of this moment and is never used.
STILL_TIMEOUT = 4.0
STILL_ASK_EVERY = 0.5
STILL_RECENT = 0.25
STILL_FALLBACK_AFTER = 2.0
STILL_MAX_AGE = 1.0


class MediaEvents(Protocol):
    """What the media layer tells the rest of the system (implemented over the DB)."""

    async def leg_closed(
        self,
        session_id: str,
        participant: str,
        segment: int,
        *,
        recording_id: str | None,
        rel_path: str | None,
        facts: FileFacts | None,
        failure: str | None,
        offset_ms: int,
        payload: dict[str, Any],
        clock_started: datetime | None = None,
    ) -> None:
        """The leg is over: its recording's row finished with the file's facts (made
        first, empty, for a leg closed before it connected; none when not recorded) and
        its media.disconnected event, together."""
        ...

    async def still_taken(
        self,
        session_id: str,
        participant: str,
        kind: str,
        rel_path: str,
        jpeg: bytes,
        offset_ms: int,
        actor: str,
        *,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]: ...

    async def event(
        self, session_id: str, offset_ms: int, kind: str, actor: str, payload: dict[str, Any]
    ) -> None: ...

    async def leg_connected(
        self,
        session_id: str,
        participant: str,
        segment: int,
        rel_path: str | None,
        offset_ms: int,
        payload: dict[str, Any],
        clock_started: datetime | None = None,
    ) -> str | None:
        """The leg is negotiated: its recording's row (None when not recorded, and then
        no row) and its media.connected event, together.

        ``clock_started`` (both methods): the wall time of the session clock's 0, to be
        written as the session's ``media.clock_started`` event in the same transaction
        (the session's first leg write carries it)."""
        ...


# (role, kind, codec name, encoded frame, session-clock ms, keyframe)
FrameObserver = Callable[[str, str, str, bytes, int, bool], None]


@dataclass(frozen=True)
class MediaSettings:
    recordings_root: Path
    # The node's own ICE servers (urls, username, credential), asked per connection.
    ice_servers: Callable[[], list[dict[str, Any]]]
    record: bool = True
    keyframe_interval: float = 10.0
    # Most a party is asked to send (REMB), bits per second; None = no cap of ours.
    max_video_bitrate: int | None = None
    # Issue 21: forward RTP packets as they come (False: assemble frames and packetize
    # them again, the way before; kept as a fallback and for the benchmark's comparison).
    forward_packets: bool = True
    # Opus audio per packet the browsers are asked for (``a=ptime`` in each answer), ms;
    # 20 is their default, so nothing is asked then.
    audio_packet_ms: int = 40
    # Told of the automatic still (session id, the still as stored) once the witness is
    # on the call, so the desk shows it like one it took (A14; issue 17).
    on_auto_still: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None


def with_audio_ptime(sdp: str, ms: int) -> str:
    """``sdp`` (an answer) asking its reader to send ``ms`` of audio per packet: an
    ``a=ptime`` line at the end of each audio section. Issue 21: per-packet work is the
    relay's cost, and audio at the browsers' 20 ms was 2 of every 5 packets. Chromium
    and Firefox both send Opus at the answer's ptime (measured here: 20 → 40 ms frames,
    50 → 25 packets a second). Nothing is added at 20 ms, their default, nor where the
    section already has one."""
    if ms == 20 or "m=audio" not in sdp:
        return sdp
    sections = sdp.split("\r\nm=")
    for i, section in enumerate(sections):
        if section.startswith("audio ") and "\r\na=ptime:" not in section:
            body = section.removesuffix("\r\n")
            sections[i] = f"{body}\r\na=ptime:{ms}" + section[len(body) :]
    return "\r\nm=".join(sections)


def _codec_preferences(kind: str, video: VideoCodec = VP8) -> list[RTCRtpCodecCapability]:
    # One video codec per leg (VP8 unless the browser has none) and Opus: the relay
    # forwards frames unchanged when both legs share the codec, and the recording's
    # container expects exactly these.
    caps = RTCRtpSender.getCapabilities(kind).codecs
    if kind == "audio":
        return [c for c in caps if c.mimeType.lower() == "audio/opus"]
    chosen = [c for c in caps if c.mimeType.lower() == f"video/{video.name.lower()}"]
    if video is H264:
        # Constrained baseline first: what browsers send, and a subset of baseline.
        chosen.sort(key=lambda c: c.parameters.get("profile-level-id") != "42e01f")
    return chosen + [c for c in caps if c.mimeType.lower() == "video/rtx"]


def _rtc_configuration(ice_servers: list[dict[str, Any]]) -> RTCConfiguration:
    # Never aiortc's default (a public Google STUN): only what the operator configured.
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in ice_servers
    ]
    # max-bundle: one ICE/DTLS transport per party (browsers bundle by default).
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


@dataclass(frozen=True)
class Picture:
    """A still's JPEG and how it was obtained (issue 17: kept with the still)."""

    jpeg: bytes
    source: StillSource
    # From the request to the arrival of the (newest) frame shown; negative for a
    # keyframe that came just before it.
    delay_ms: int
    # From the request to the JPEG being ready.
    ready_ms: int
    requests: int  # keyframe requests sent for it

    def details(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "delay_ms": self.delay_ms,
            "ready_ms": self.ready_ms,
            "keyframe_requests": self.requests,
        }


class StillMissed(Exception):
    def __init__(self, reason: StillMiss, requests: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.requests = requests


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


@dataclass
class Leg:
    role: str
    segment: int
    pc: RTCPeerConnection
    writer: SegmentWriter | None
    rel_path: str | None  # the recording's, under the recordings root (None: not recorded)
    recording_id: str | None
    video_out: ForwardTrack
    audio_out: ForwardTrack
    video_codec: VideoCodec = VP8  # what this party sends and receives
    downstream_bitrate: int | None = None  # what the party's browser says it can take
    video_receiver: RTCRtpReceiver | None = None
    last_keyframe_request: float = 0.0
    # A still waiting for a keyframe: (its frame, arrival on the monotonic clock).
    still_waiters: list[asyncio.Future[tuple[bytes, float]]] = field(default_factory=list)
    # Issue 17: the latest intact keyframe and the frames after it, for a still when the
    # keyframe asked for does not come.
    gop: Gop = field(default_factory=Gop)
    frames_in: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    # Issue 16: RTP packets that never reached us (or were discarded with their frame),
    # whether video is damaged now (until an intact keyframe), keyframes asked for it.
    packets_missing: dict[str, int] = field(default_factory=lambda: {"video": 0, "audio": 0})
    video_damaged: bool = False
    loss_keyframe_requests: int = 0
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
        # Its wall time, logged as media.clock_started by the first leg write (issue 21:
        # a write of its own held up the first party's answer by one more turn at the
        # database); True once that write is under way or done.
        self.origin_at = datetime.now(UTC)
        self._clock_logged = False
        self.legs: dict[str, Leg] = {}
        self.next_segment = {role: 0 for role in ROLES}
        self.cues: list[Cue] = []
        # The script step on screen now: (start_ms, text), a cue once it ends.
        self._open_cue: tuple[int, str] | None = None
        self.auto_still_taken = False
        self._auto_pending = False
        # Automatic stills stored but not yet shown to the witness (not on the call yet).
        self._unannounced: list[dict[str, Any]] = []
        self.closed = False
        self._closing: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing_legs: set[asyncio.Future[None]] = set()
        self._keyframe_task = asyncio.create_task(self._periodic_keyframes())
        # A18: the one-way checks watch the investor's frames as they arrive (called on
        # the event loop for every frame: an observer must only queue work).
        self.observers: list[FrameObserver] = []

    def _claim_clock(self) -> datetime | None:
        """The clock's start for the leg write about to be made, if none has it yet."""
        if self._clock_logged:
            return None
        self._clock_logged = True
        return self.origin_at

    def _release_clock(self, claimed: datetime | None) -> None:
        """The write that carried the clock's start failed: the next one carries it."""
        if claimed is not None:
            self._clock_logged = False

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
        video = choose_video_codec(offer_sdp)
        if video is None and "m=video" in offer_sdp:
            raise InvalidInput(
                "bad_offer",
                "The browser offers neither VP8 nor H.264 video.",
                "浏览器不支持 VP8 或 H.264 视频，请换用其他浏览器。",
            )
        video = video or VP8
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
            leg = self._open_leg(role, video)
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
                    "浏览器的连接请求无法接受（需支持 VP8 或 H.264 视频和 Opus 音频）。",
                ) from exc
            raise
        relay = self._relay_mode(role)
        try:
            async with self._lock:
                # Not if the leg was replaced, dropped or the session closed meanwhile:
                # whoever took it out closes it, and its row is written then.
                if self.legs.get(role) is leg and not leg.closed:
                    # The recording's row and the media.connected event in one
                    # transaction, before the answer leaves (no frame can come before
                    # it, so the file never exists without its row): one wait for the
                    # database where there were two (issue 21: the join wait at 32
                    # sessions). relay: how video goes between the parties (both ways
                    # alike), None while the other party has no leg.
                    clock = self._claim_clock()
                    try:
                        leg.recording_id = await self.events.leg_connected(
                            self.session_id,
                            role,
                            leg.segment,
                            leg.rel_path,
                            self.now_ms(),
                            {
                                "segment": leg.segment,
                                "video_codec": leg.video_codec.name,
                                "relay": relay,
                            },
                            clock_started=clock,
                        )
                    except BaseException:
                        self._release_clock(clock)
                        raise
        except Exception:
            async with self._lock:
                if self.legs.get(role) is leg:
                    del self.legs[role]
            try:
                await self._close_leg(leg, reason="not_recorded")
            except Exception:
                log.exception(
                    "closing an unrecorded leg failed", extra={"session": self.session_id}
                )
            raise
        if role == "witness":
            self._announce_stills()
        log.info(
            "media connected",
            extra={
                "session": self.session_id,
                "role": role,
                "video_codec": leg.video_codec.name,
                "relay": relay,
            },
        )
        return answer

    def _relay_mode(self, role: str) -> str | None:
        leg, peer = self.legs.get(role), self.legs.get(OTHER[role])
        if leg is None or peer is None:
            return None
        return relay_mode(peer.video_codec, leg.video_codec)

    def _open_leg(self, role: str, video: VideoCodec) -> Leg:
        segment = self.next_segment[role]
        self.next_segment[role] = segment + 1
        writer: SegmentWriter | None = None
        rel_path: str | None = None
        if self.settings.record:
            # The row is written once the leg is negotiated (connect), or on its close.
            rel_path = f"{self.rel_dir}/{role}-{segment:02d}{video.suffix}"
            writer = SegmentWriter(self.settings.recordings_root / rel_path, video)
        pc = RTCPeerConnection(_rtc_configuration(self.settings.ice_servers()))
        other = OTHER[role]
        leg = Leg(
            role=role,
            segment=segment,
            pc=pc,
            writer=writer,
            rel_path=rel_path,
            recording_id=None,
            # What this party receives: the other party's frames. A gap or a browser's
            # PLI asks the *other* party for a keyframe.
            video_out=ForwardTrack(
                "video", need_keyframe=lambda: self._ask_keyframe(other), codec=video
            ),
            audio_out=ForwardTrack("audio", need_keyframe=lambda: None),
            video_codec=video,
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
        # Transceivers made before the offer is applied: aiortc filters the offer's
        # codecs by their preferences only then (set afterwards, they would not narrow
        # the answer, and the sender would use whatever the browser listed first).
        for kind in ("audio", "video"):
            if f"m={kind}" in offer_sdp:
                out = leg.video_out if kind == "video" else leg.audio_out
                transceiver = pc.addTransceiver(out, direction="sendrecv")
                transceiver.setCodecPreferences(_codec_preferences(kind, leg.video_codec))
                if self.settings.forward_packets:
                    out.rtp_out = hooks.RtpOut(transceiver.sender)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except OperationError as exc:
            raise ValueError(f"no codec in common ({exc})") from exc
        for transceiver in pc.getTransceivers():
            kind = transceiver.kind
            hooks.tap_receiver_watched(
                transceiver.receiver,
                self._sink(leg, kind),
                self._packet_sink(leg, kind) if self.settings.forward_packets else None,
            )
            if kind == "video":
                leg.video_receiver = transceiver.receiver
                sender = transceiver.sender
                hooks.on_keyframe_request(sender, partial(self._keyframe_wanted, leg))
                hooks.on_remb(sender, partial(self._downstream_remb, leg))
                hooks.limit_remb(transceiver.receiver, partial(self._upstream_limit, leg))
                leg.video_out.force_keyframe = partial(hooks.force_keyframe, sender)
        answer = await pc.createAnswer()
        if answer is None:
            raise ValueError("no answer")
        sdp = answer.sdp
        if "m=video" in sdp and f" {leg.video_codec.name}/" not in sdp:
            raise ValueError(f"the browser does not offer {leg.video_codec.name} video")
        if "m=audio" in sdp and "opus" not in sdp.lower():
            raise ValueError("the browser does not offer Opus audio")
        await pc.setLocalDescription(answer)
        if self.settings.forward_packets:
            hooks.receive_eagerly(pc)
        return with_audio_ptime(pc.localDescription.sdp, self.settings.audio_packet_ms)

    def _sink(self, leg: Leg, kind: str) -> hooks.WatchedSink:
        def on_frame(codec: str, data: bytes, rtp_ts: int, arrival: hooks.Arrival) -> None:
            try:
                handle(data, rtp_ts, arrival)
            except Exception:
                # Never into aiortc's receive loop: that would close the transport and
                # cut the call. The recorder has already marked itself failed if it was it.
                log.exception("media frame handling failed", extra={"session": self.session_id})

        def handle(data: bytes, rtp_ts: int, how: hooks.Arrival) -> None:
            if leg.closed:
                return
            arrival = self.now_ms()
            leg.frames_in[kind] += 1
            leg.packets_missing[kind] += how.packets_missing
            peer = self.legs.get(OTHER[leg.role])
            if kind == "video":
                key = leg.video_codec.is_keyframe(data)
                self._track_video_loss(leg, key, how)
                # A keyframe with packets missing *before* it is itself whole.
                intact = not how.incomplete and (key or not how.packets_missing)
                leg.gop.add(data, key=key, intact=intact, at=time.monotonic())
                if leg.writer is not None:
                    if not leg.writer.started and not key:
                        self._ask_keyframe(leg.role)
                    leg.writer.write_video(
                        data,
                        rtp_ts,
                        arrival,
                        packets_missing=how.packets_missing,
                        incomplete=how.incomplete,
                    )
                if peer is not None:
                    peer.video_out.push(data, rtp_ts, leg, leg.video_codec)
                if key and not how.incomplete:
                    self._keyframe_arrived(leg, data)
                for observe in self.observers:
                    observe(leg.role, "video", leg.video_codec.name, data, arrival, key)
            else:
                if leg.writer is not None:
                    leg.writer.write_audio(
                        data, rtp_ts, arrival, packets_missing=how.packets_missing
                    )
                if peer is not None:
                    peer.audio_out.push(data, rtp_ts, leg)
                for observe in self.observers:
                    observe(leg.role, "audio", "opus", data, arrival, False)

        return on_frame

    def _packet_sink(self, leg: Leg, kind: str) -> hooks.PacketSink:
        failures = 0

        def on_packet(packet: RtpPacket) -> None:
            nonlocal failures
            if leg.closed:
                return
            peer = self.legs.get(OTHER[leg.role])
            if peer is None:
                return
            out = peer.video_out if kind == "video" else peer.audio_out
            try:
                out.forward_packet(packet, leg, leg.video_codec)
            except Exception:
                # Never into aiortc's receive loop (it would cut the call), and not once
                # a packet into the log: the first failure with its trace, then a count.
                failures += 1
                if failures == 1 or failures % 1000 == 0:
                    log.exception(
                        "packet forwarding failed",
                        extra={"session": self.session_id, "failures": failures},
                    )

        return on_packet

    def _track_video_loss(self, leg: Leg, key: bool, how: hooks.Arrival) -> None:
        """Issue 16: from a lost or torn frame on, every picture refers to something
        missing until an intact keyframe: ask the party for one at once, and again (rate
        limited) while it has not come, since the request itself may be lost."""
        if how.packets_missing or how.incomplete:
            leg.video_damaged = True
        elif key:
            leg.video_damaged = False
        if leg.video_damaged and self._keyframe_request(leg.role):
            leg.loss_keyframe_requests += 1

    def _keyframe_arrived(self, leg: Leg, data: bytes) -> None:
        now = time.monotonic()
        waiters, leg.still_waiters = leg.still_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result((data, now))
        if leg.role == "investor" and not self.auto_still_taken and not self._auto_pending:
            # A14/A19: a frontal photo at session start, without anyone asking.
            self._auto_pending = True
            self._spawn(self._auto_still(leg, data))

    async def _auto_still(self, leg: Leg, keyframe: bytes) -> None:
        try:
            jpeg, _w, _h = await asyncio.to_thread(decode_still, keyframe, leg.video_codec)
            picture = Picture(jpeg, StillSource.KEYFRAME, 0, 0, 0)
            still = await self._store_still(leg, picture, kind=StillKind.AUTO, actor="system")
            self.auto_still_taken = True
        except ValueError:
            log.warning(
                "automatic still: first keyframe did not decode, waiting for the next",
                extra={"session": self.session_id, "role": leg.role},
            )
            return
        finally:
            self._auto_pending = False
        self._unannounced.append(still)
        self._announce_stills()

    def _announce_stills(self) -> None:
        """Issue 17: the automatic still goes to the witness's desk as a still it took
        would, with its face score; only once the witness is on the call (its socket
        listens from before its offer), else it would be published to no one."""
        witness = self.legs.get("witness")
        notify = self.settings.on_auto_still
        if notify is None or witness is None or witness.closed or not self._unannounced:
            return
        stills, self._unannounced = self._unannounced, []
        for still in stills:
            self._spawn(notify(self.session_id, still))

    def _downstream_remb(self, leg: Leg, bitrate: int) -> None:
        leg.downstream_bitrate = bitrate

    def _upstream_limit(self, leg: Leg) -> int | None:
        """The most ``leg``'s party should send: our cap, and while its frames are
        forwarded unchanged, what the other party's browser can take (no encoder of
        ours sits between them to adapt). A transcoded direction adapts in our encoder."""
        cap = self.settings.max_video_bitrate
        peer = self.legs.get(OTHER[leg.role])
        if peer is None or peer.closed or peer.video_out.mode == TRANSCODE:
            return cap
        down = peer.downstream_bitrate
        if down is None:
            return cap
        return down if cap is None else min(cap, down)

    def _keyframe_wanted(self, leg: Leg) -> None:
        """The party's browser asked this leg's sender for a keyframe (PLI/FIR)."""
        if leg.video_out.mode == TRANSCODE:
            return  # our own encoder makes one (aiortc's sender does on the request)
        self._ask_keyframe(OTHER[leg.role])

    def _ask_keyframe(self, role: str) -> None:
        self._keyframe_request(role)

    def _still_keyframe_request(self, leg: Leg) -> bool:
        """A still's keyframe request: PLI and FIR, not rate-limited by other requests
        (the still paces its own), and it counts as the party's latest."""
        if leg.closed or leg.video_receiver is None:
            return False
        leg.last_keyframe_request = time.monotonic()
        self._spawn(hooks.request_keyframe(leg.video_receiver, fir=True))
        return True

    def _keyframe_request(self, role: str) -> bool:
        """Send ``role``'s party a keyframe request unless one went within the gap."""
        leg = self.legs.get(role)
        if leg is None or leg.video_receiver is None or leg.closed:
            return False
        now = time.monotonic()
        if now - leg.last_keyframe_request < KEYFRAME_REQUEST_GAP:
            return False
        leg.last_keyframe_request = now
        self._spawn(hooks.request_keyframe(leg.video_receiver))
        return True

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

    def open_cue(self, start_ms: int, text: str) -> None:
        """A script step is on screen from ``start_ms``; the step before it (if any) ends
        there. Its cue is written when it ends (``close_cue``, or the session closes)."""
        self.close_cue(start_ms)
        self._open_cue = (start_ms, text)

    def close_cue(self, end_ms: int) -> None:
        if self._open_cue is not None:
            start_ms, text = self._open_cue
            self._open_cue = None
            self.add_cue(start_ms, max(end_ms, start_ms), text)

    async def capture_still(self, role: str, *, kind: str, actor: str) -> dict[str, Any]:
        """A photo of ``role`` from the live stream, now (A14; issue 17): the first
        decodable keyframe asked for, else the picture of now from the frames kept; a
        miss is logged with its reason."""
        asked = time.monotonic()
        leg = self.legs.get(role)
        try:
            if leg is None or leg.closed or leg.video_receiver is None:
                raise StillMissed(StillMiss.NO_VIDEO, 0)
            picture = await self._obtain_still(leg, asked)
        except StillMissed as miss:
            # Issue 17: a miss used to pass without a word. No personal data here.
            log.warning(
                "still missed: %s",
                miss.reason,
                extra={
                    "session": self.session_id,
                    "role": role,
                    "reason": str(miss.reason),
                    "waited_ms": _ms(time.monotonic() - asked),
                    "keyframe_requests": miss.requests,
                },
            )
            if miss.reason is StillMiss.NO_VIDEO:
                raise Unavailable(
                    "no_video", "No live video from that party.", "对方当前没有视频。"
                ) from None
            raise Unavailable(
                "still_timeout",
                "No picture arrived in time; try again.",
                "未能及时获取画面，请重试。",
            ) from None
        log.info(
            "still taken",
            extra={"session": self.session_id, "role": role, **picture.details()},
        )
        return await self._store_still(leg, picture, kind=kind, actor=actor)

    async def _obtain_still(self, leg: Leg, asked: float) -> Picture:
        codec = leg.video_codec
        requests = 0
        failed = False  # something came or was kept, and did not decode

        def picture(jpeg: bytes, source: StillSource, shown_at: float) -> Picture:
            return Picture(
                jpeg, source, _ms(shown_at - asked), _ms(time.monotonic() - asked), requests
            )

        recent = leg.gop.keyframe
        if recent is not None and 0 <= asked - recent[1] <= STILL_RECENT:
            try:
                jpeg, _w, _h = await asyncio.to_thread(decode_still, recent[0], codec)
                return picture(jpeg, StillSource.RECENT_KEYFRAME, recent[1])
            except ValueError:
                failed = True
        deadline = asked + STILL_TIMEOUT
        fallback_at: float | None = asked + STILL_FALLBACK_AFTER
        next_ask = asked
        tried: bytes | None = None  # the keyframe of the kept frames last decoded
        waiter: asyncio.Future[tuple[bytes, float]] | None = None
        try:
            while (now := time.monotonic()) < deadline:
                if leg.closed:
                    raise StillMissed(StillMiss.NO_VIDEO, requests)
                if now >= next_ask:
                    requests += self._still_keyframe_request(leg)
                    next_ask = now + STILL_ASK_EVERY
                if fallback_at is not None and now >= fallback_at:
                    fallback_at = None
                    tried = leg.gop.keyframe[0] if leg.gop.keyframe else None
                    kept = await self._decode_kept(leg, asked)
                    if kept is not None and kept[0] is not None:
                        return picture(kept[0], StillSource.GOP, kept[1])
                    failed = failed or kept is not None
                    continue
                if waiter is None:
                    waiter = asyncio.get_running_loop().create_future()
                    leg.still_waiters.append(waiter)
                wake = min(next_ask, deadline, fallback_at or deadline)
                await asyncio.wait({waiter}, timeout=max(0.0, wake - time.monotonic()))
                if not waiter.done():
                    continue
                if waiter.exception() is not None:  # the leg closed
                    raise StillMissed(StillMiss.NO_VIDEO, requests)
                data, arrived = waiter.result()
                waiter = None
                try:
                    jpeg, _w, _h = await asyncio.to_thread(decode_still, data, codec)
                    return picture(jpeg, StillSource.KEYFRAME, arrived)
                except ValueError:
                    failed = True  # a damaged keyframe: the next one is asked for
            # Last resort at the deadline: the kept frames, unless tried as they are.
            if fallback_at is not None or (leg.gop.keyframe and leg.gop.keyframe[0] is not tried):
                kept = await self._decode_kept(leg, asked)
                if kept is not None and kept[0] is not None:
                    return picture(kept[0], StillSource.GOP, kept[1])
                failed = failed or kept is not None
        finally:
            if waiter is not None:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    leg.still_waiters.remove(waiter)
        raise StillMissed(StillMiss.DECODE_ERROR if failed else StillMiss.NO_KEYFRAME, requests)

    async def _decode_kept(self, leg: Leg, asked: float) -> tuple[bytes | None, float] | None:
        """The newest picture of the leg's kept frames: (JPEG, arrival of the newest frame),
        (None, …) if they did not decode, None if nothing recent enough is kept."""
        newest = leg.gop.newest
        if newest is None or asked - newest > STILL_MAX_AGE:
            return None
        frames = leg.gop.snapshot()
        try:
            jpeg, _w, _h = await asyncio.to_thread(decode_last, frames, leg.video_codec)
        except ValueError:
            return None, newest
        return jpeg, newest

    async def _store_still(
        self, leg: Leg, picture: Picture, *, kind: str, actor: str
    ) -> dict[str, Any]:
        offset = self.now_ms()
        rel_path = f"{self.rel_dir}/stills/{leg.role}-{offset:09d}-{kind}.jpg"
        return await self.events.still_taken(
            self.session_id,
            leg.role,
            kind,
            rel_path,
            picture.jpeg,
            offset,
            actor,
            details=picture.details(),
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
        # A step still on screen ends with the call; its cue goes in before the files close.
        self.close_cue(self.now_ms())
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
                    damage = leg.writer.damage_report()
                    facts = await asyncio.to_thread(finalize, leg.writer.path, damage)
                except (av.error.FFmpegError, OSError) as exc:
                    failure = failure or f"finalize: {exc}"
        # One transaction (issue 21: a leg's end took three, each a turn at SQLite's
        # write lock). A leg closed before it was connected (refused offer, dropped or
        # replaced while negotiating) still accounts for its segment, as an empty row.
        clock = self._claim_clock()
        try:
            await self.events.leg_closed(
                self.session_id,
                leg.role,
                leg.segment,
                recording_id=leg.recording_id,
                rel_path=leg.rel_path,
                facts=facts,
                failure=failure,
                offset_ms=self.now_ms(),
                payload={
                    "segment": leg.segment,
                    "reason": reason,
                    "frames_in": dict(leg.frames_in),
                    # Issue 16: what was lost on the way in, and keyframes asked for after it.
                    "packets_missing": dict(leg.packets_missing),
                    "loss_keyframe_requests": leg.loss_keyframe_requests,
                    # What the relay handed this party's sender, and dropped because the
                    # party was not keeping up (the load benchmark reads both).
                    "frames_out": {"video": leg.video_out.pushed, "audio": leg.audio_out.pushed},
                    "frames_dropped": {
                        "video": leg.video_out.dropped,
                        "audio": leg.audio_out.dropped,
                    },
                },
                clock_started=clock,
            )
        except BaseException:
            self._release_clock(clock)
            raise
