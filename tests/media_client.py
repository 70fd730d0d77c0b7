"""An aiortc participant for tests: joins a session socket, sends a synthetic camera
and microphone, and counts what it receives from the other party. Received video is
counted as aiortc's receiver *decodes* it (a frame that fails to decode never comes out
of ``track.recv()``)."""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import math
import time
from typing import Any

import av
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RtcpPsfbPacket

from server.media import hooks

WIDTH, HEIGHT = 320, 240


class PatternTrack(VideoStreamTrack):
    """30 fps frames whose brightness changes, so frames differ and encode cheaply."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        shade = (self.sent * 7) % 200 + 20
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        luma = bytes([shade]) * (WIDTH // 2) + bytes([255 - shade]) * (WIDTH // 2)
        frame.planes[0].update(luma * HEIGHT)
        for plane in frame.planes[1:]:
            plane.update(bytes([128]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        self.sent += 1
        return frame


class ToneTrack(AudioStreamTrack):
    """A 440 Hz tone in 20 ms frames (aiortc resamples to 48 kHz for Opus)."""

    def __init__(self) -> None:
        super().__init__()
        self.samples = 0

    async def recv(self) -> av.AudioFrame:
        frame = await super().recv()  # 20 ms of 8 kHz silence, paced, with pts
        n = frame.samples
        tone = array.array(
            "h",
            (int(8000 * math.sin(2 * math.pi * 440 * (i + self.samples) / 8000)) for i in range(n)),
        )
        frame.planes[0].update(tone.tobytes())
        self.samples += n
        return frame


class Party:
    def __init__(
        self, client: Any, session_id: str, token: str, *, video_codecs: tuple[str, ...] = ()
    ) -> None:
        self.client = client
        self.session_id = session_id
        self.token = token
        # e.g. ("video/h264",): offer only these (an embedded browser without VP8).
        self.video_codecs = video_codecs
        self.ws: Any = None
        self.pc: RTCPeerConnection | None = None
        self.video_transceiver: RTCRtpTransceiver | None = None
        self.received = {"video": 0, "audio": 0}
        self.video_size: tuple[int, int] | None = None  # of the last decoded picture
        self.keyframes_received: list[float] = []  # when a decoded picture was a key one
        self.keyframe_requests: list[float] = []  # when the server asked our sender for one
        self.first_frame_at: float | None = None
        # Keyframe requests to lose on the way in (issue 17): the next this many PLIs,
        # each with the FIR sent beside it, never reach the sender (a lost request).
        self.lose_keyframe_requests = 0
        self.keyframe_requests_lost = 0
        self._losing_request = False
        self.messages: list[dict[str, Any]] = []
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[Any]] = []
        self.video = PatternTrack()
        self.audio = ToneTrack()

    async def join(self) -> dict[str, Any]:
        self.ws = await self.client.ws_connect(f"/ws/session/{self.session_id}?token={self.token}")
        self._tasks.append(asyncio.create_task(self._read()))
        return await self.next_of("joined")

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type.name == "TEXT":
                data = json.loads(msg.data)
                self.messages.append(data)
                await self._inbox.put(data)

    async def next_of(self, kind: str, within: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while True:
            data = await asyncio.wait_for(self._inbox.get(), deadline - time.monotonic())
            if data.get("type") == kind:
                return data
            if data.get("type") == "error" and kind != "error":
                raise AssertionError(f"error while waiting for {kind}: {data}")

    async def start_media(self) -> None:
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        self.pc = pc
        pc.addTransceiver(self.audio, direction="sendrecv")
        video = pc.addTransceiver(self.video, direction="sendrecv")
        self.video_transceiver = video
        if self.video_codecs:
            wanted = {*self.video_codecs, "video/rtx"}
            caps = RTCRtpSender.getCapabilities("video").codecs
            video.setCodecPreferences([c for c in caps if c.mimeType.lower() in wanted])
        hooks.on_keyframe_request(
            video.sender, lambda: self.keyframe_requests.append(time.monotonic())
        )
        self._lose_requests(video.sender)

        @pc.on("track")
        def on_track(track: Any) -> None:
            self._tasks.append(asyncio.create_task(self._consume(track)))

        await pc.setLocalDescription(await pc.createOffer())
        await self.ws.send_json({"type": "offer", "sdp": pc.localDescription.sdp})
        answer = await self.next_of("answer")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    def _lose_requests(self, sender: RTCRtpSender) -> None:
        handle = sender._handle_rtcp_packet

        async def maybe_lose(packet: Any) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_PLI:
                self._losing_request = self.lose_keyframe_requests > 0
                if self._losing_request:
                    self.lose_keyframe_requests -= 1
                    self.keyframe_requests_lost += 1
                    return
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_FIR:
                if self._losing_request:
                    return
            await handle(packet)

        sender._handle_rtcp_packet = maybe_lose  # type: ignore[method-assign]

    async def next_still(self, kind: str = "manual", within: float = 10.0) -> dict[str, Any]:
        """The next still of a kind (the automatic one at session start comes to the
        witness's socket too, issue 17)."""
        deadline = time.monotonic() + within
        while True:
            still = await self.next_of("still", within=max(0.0, deadline - time.monotonic()))
            if still.get("kind") == kind:
                return still

    async def _consume(self, track: Any) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if isinstance(frame, av.VideoFrame):
                    if self.first_frame_at is None:
                        self.first_frame_at = time.monotonic()
                    self.video_size = (frame.width, frame.height)
                    if frame.key_frame:  # set by FFmpeg's h264 decoder, not by libvpx
                        self.keyframes_received.append(time.monotonic())
                self.received[track.kind] += 1

    async def stop_media(self) -> None:
        if self.pc is not None:
            await self.pc.close()
            self.pc = None

    async def close(self) -> None:
        await self.stop_media()
        if self.ws is not None:
            await self.ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
