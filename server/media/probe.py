"""The investor's test connection (issue 16): a short-lived peer connection on this media
node, through the same ICE/TURN servers and host addresses a call would use.

The browser offers a data channel and a send-only video track; we answer. Once connected
we measure for a few seconds: the round trip by echo (we send ``ping``s on the data
channel, the browser answers ``pong``; its own ``ping``s we answer at once so it can show
a live figure) and the upstream by counting what arrives: the encoded video (tapped
before aiortc would decode it: nothing is decoded, nothing is recorded) and filler the
browser sends on the data channel at a paced ~1 Mbit/s. The filler is what makes it an
estimate of the link rather than of the encoder: a still or dark picture encodes to a
few tens of kbit/s on any network. The result
goes back on the data channel, sealed by the caller (the browser posts it, and the post
may reach another worker), and the connection is closed. Every probe is bounded in time
and in number per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

from server.domain.errors import InvalidInput, Unavailable
from server.media import hooks

log = logging.getLogger(__name__)

PING_INTERVAL = 0.2  # seconds between our pings: ~20 samples in 4 s
# After the result is sent: time for it to leave before the connection closes.
_FLUSH_SECONDS = 0.5
_MAX_MESSAGE = 1000  # bytes; the browser only sends tiny JSON messages


@dataclass
class ProbeResult:
    probe_id: str
    connected: bool
    rtt_ms: int | None  # median of our pings' echoes
    rtt_samples: int
    upstream_kbps: int | None  # over the second half of the window (after ramp-up)
    upstream_avg_kbps: int | None  # over the whole window
    video_bytes: int
    video_frames: int
    fill_bytes: int
    measured_ms: int
    connect_ms: int | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Counters:
    video_bytes: int = 0
    video_frames: int = 0
    fill_bytes: int = 0
    pings: dict[int, float] = field(default_factory=dict)
    rtts: list[float] = field(default_factory=list)
    samples: list[tuple[float, int]] = field(default_factory=list)  # (time, bytes so far)


def _rtc_configuration(ice_servers: list[dict[str, Any]]) -> RTCConfiguration:
    # As a call's legs (media/session.py): only the operator's servers, never aiortc's
    # default public STUN; bundled like a browser.
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in ice_servers
    ]
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


class Probe:
    def __init__(
        self,
        probe_id: str,
        *,
        ice_servers: list[dict[str, Any]],
        connect_seconds: float,
        measure_seconds: float,
        seal: Callable[[ProbeResult], dict[str, Any]],
    ) -> None:
        self.probe_id = probe_id
        self.pc = RTCPeerConnection(_rtc_configuration(ice_servers))
        self.connect_seconds = connect_seconds
        self.measure_seconds = measure_seconds
        self.seal = seal
        self.counters = _Counters()
        self.channel: RTCDataChannel | None = None
        self.connected = asyncio.Event()
        self.channel_open = asyncio.Event()
        self.created = time.monotonic()
        self.result: ProbeResult | None = None

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            if self.pc.connectionState == "connected":
                self.connected.set()

        @self.pc.on("datachannel")
        def on_channel(channel: RTCDataChannel) -> None:
            self.channel = channel
            channel.on("message", self._on_message)
            if channel.readyState == "open":
                self.channel_open.set()
            channel.on("open", self.channel_open.set)

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.counters.fill_bytes += len(message)  # filler: counted, never kept
            return
        if len(message) > _MAX_MESSAGE:
            return
        try:
            data = json.loads(message)
            kind, seq = data.get("type"), int(data.get("seq"))
        except (ValueError, TypeError, AttributeError):
            return  # not ours to interpret: the browser's page is not trusted
        if kind == "ping" and self.channel is not None:
            self._send({"type": "pong", "seq": seq})
        elif kind == "pong":
            sent = self.counters.pings.pop(seq, None)
            if sent is not None:
                self.counters.rtts.append((time.monotonic() - sent) * 1000)

    def _send(self, data: dict[str, Any]) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            channel.send(json.dumps(data))

    def _on_frame(self, codec: str, data: bytes, rtp_ts: int) -> None:
        # Called from aiortc's receive loop: count only, never raise.
        self.counters.video_bytes += len(data)
        self.counters.video_frames += 1

    async def answer(self, offer_sdp: str) -> str:
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:  # aiortc raises ValueError, OperationError, …
            raise InvalidInput(
                "network_check_offer_invalid",
                "The test connection's offer could not be used.",
                "测试连接的请求无效。",
                details={"reason": str(exc)[:200]},
            ) from None
        for transceiver in self.pc.getTransceivers():
            # Encoded frames are counted here and never decoded.
            hooks.tap_receiver(transceiver.receiver, self._on_frame)
        answer = await self.pc.createAnswer()
        if answer is None:
            raise InvalidInput(
                "network_check_offer_invalid",
                "The test connection's offer could not be answered.",
                "测试连接的请求无效。",
            )
        await self.pc.setLocalDescription(answer)
        return str(self.pc.localDescription.sdp)

    async def run(self) -> ProbeResult:
        """Connect, measure, send the sealed result, close: at most connect + measure
        seconds (plus the flush), whatever the far end does."""
        try:
            return await self._run()
        finally:
            await self.pc.close()

    async def _run(self) -> ProbeResult:
        try:
            await asyncio.wait_for(self.connected.wait(), self.connect_seconds)
        except TimeoutError:
            self.result = self._finish(connected=False, started=None)
            return self.result
        connect_ms = int((time.monotonic() - self.created) * 1000)
        # The channel opens just after the transport: a little grace, still bounded.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.channel_open.wait(), 2.0)
        started = time.monotonic()
        seq = 0
        end = started + self.measure_seconds
        while (now := time.monotonic()) < end:
            seq += 1
            self.counters.pings[seq] = now
            self._send({"type": "ping", "seq": seq})
            self.counters.samples.append((now, self._received()))
            await asyncio.sleep(min(PING_INTERVAL, max(0.0, end - now)))
        self.counters.samples.append((time.monotonic(), self._received()))
        result = self._finish(connected=True, started=started, connect_ms=connect_ms)
        self._send({"type": "result", **self.seal(result)})
        await asyncio.sleep(_FLUSH_SECONDS)
        self.result = result
        return result

    def _received(self) -> int:
        return self.counters.video_bytes + self.counters.fill_bytes

    def _finish(
        self, *, connected: bool, started: float | None, connect_ms: int | None = None
    ) -> ProbeResult:
        c = self.counters
        measured = (time.monotonic() - started) if started is not None else 0.0
        upstream = avg = None
        if connected and len(c.samples) >= 2:
            (t0, b0), (t1, b1) = c.samples[0], c.samples[-1]
            avg = int((b1 - b0) * 8 / max(t1 - t0, 0.001) / 1000)
            # The second half: a browser starts low and ramps its rate up.
            mid = next(s for s in c.samples if s[0] >= t0 + (t1 - t0) / 2)
            upstream = int((b1 - mid[1]) * 8 / max(t1 - mid[0], 0.001) / 1000)
        return ProbeResult(
            probe_id=self.probe_id,
            connected=connected,
            rtt_ms=round(statistics.median(c.rtts)) if c.rtts else None,
            rtt_samples=len(c.rtts),
            upstream_kbps=upstream,
            upstream_avg_kbps=avg,
            video_bytes=c.video_bytes,
            video_frames=c.video_frames,
            fill_bytes=c.fill_bytes,
            measured_ms=int(measured * 1000),
            connect_ms=connect_ms,
        )


class ProbeNode:
    """This process's test connections: at most ``max_concurrent`` at once."""

    def __init__(
        self,
        *,
        max_concurrent: int,
        connect_seconds: float,
        measure_seconds: float,
        on_result: Callable[[ProbeResult], None] = lambda _r: None,
    ) -> None:
        self.max_concurrent = max_concurrent
        self.connect_seconds = connect_seconds
        self.measure_seconds = measure_seconds
        self.on_result = on_result
        self.running: dict[str, asyncio.Task[ProbeResult]] = {}
        self._starting = 0

    async def start(
        self,
        probe_id: str,
        offer_sdp: str,
        *,
        ice_servers: list[dict[str, Any]],
        seal: Callable[[ProbeResult], dict[str, Any]],
    ) -> str:
        """Answer the offer and run the probe in the background; Unavailable when this
        process already runs its most (the browser says to try again in a moment)."""
        if len(self.running) + self._starting >= self.max_concurrent:
            raise Unavailable(
                "network_check_busy",
                "Too many connection tests are running; try again in a few seconds.",
                "当前测试连接较多，请几秒后重试。",
                details={"retry_after": 5},
            )
        self._starting += 1
        try:
            probe = Probe(
                probe_id,
                ice_servers=ice_servers,
                connect_seconds=self.connect_seconds,
                measure_seconds=self.measure_seconds,
                seal=seal,
            )
            try:
                sdp = await asyncio.wait_for(probe.answer(offer_sdp), self.connect_seconds)
            except BaseException:
                await probe.pc.close()
                raise
            task = asyncio.create_task(probe.run())
            self.running[probe_id] = task
            task.add_done_callback(lambda t: self._done(probe_id, t))
            return sdp
        finally:
            self._starting -= 1

    def _done(self, probe_id: str, task: asyncio.Task[ProbeResult]) -> None:
        self.running.pop(probe_id, None)
        if task.cancelled():
            return
        if task.exception() is not None:
            log.error("network probe failed", exc_info=task.exception())
            return
        self.on_result(task.result())

    async def close(self) -> None:
        for task in list(self.running.values()):
            task.cancel()
        for task in list(self.running.values()):
            with contextlib.suppress(BaseException):
                await task
