"""Light benchmark parties (issue 21): enough of a browser for the server not to tell the
difference, at a fraction of an aiortc client's CPU, so that this 2-core machine can drive
24 and more sessions against its own server.

aiortc still does what a browser's connection does once (ICE, DTLS, SRTP keys, RTCP), but
the media skips its per-packet machinery:

- **sending**: the clip's VP8 frames are packetized as aiortc's sender would (payload
  descriptor with a picture id) and each packet goes out through ``hooks.RtpOut`` — the
  server's own way of sending built packets (SRTP, the nominated pair, the sender's
  history so NACKs are answered, its RTCP sender reports);
- **receiving**: SRTP leaves the RTP header in the clear, so packets are counted from it
  (frames by marker bit, loss by sequence number) before aiortc would decrypt, parse,
  buffer and depacketize them; RTCP still goes to aiortc. Only until a party has kept its
  spot-check frames are its video packets decrypted and assembled.

What the server receives and sends is the same as with full aiortc clients: only the
clients' CPU differs.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
from aiortc.codecs import depayload
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from server.media import hooks
from server.media.codecs import is_vp8_keyframe

_VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=0)
_original_datagram_received = aioice.ice.StunProtocol.datagram_received
# The ICE connections whose media is counted here, and how.
_counted: dict[Any, Receiving] = {}


def _datagram_received(self: Any, data: bytes, addr: tuple[Any, ...]) -> None:
    # RFC 7983 / RFC 5761: first byte 128–191 is RTP or RTCP; RTCP's packet types
    # 192–223 sit where RTP has the marker bit and payload types 64–95.
    if data and 127 < data[0] < 192 and not 191 < data[1] < 224:
        receiving = _counted.get(self.receiver)
        if receiving is not None:
            receiving.rtp(data)
            return
    _original_datagram_received(self, data, addr)


def install() -> None:
    """Count RTP of registered connections at the socket (this process only)."""
    setattr(aioice.ice.StunProtocol, "datagram_received", _datagram_received)  # noqa: B010


@dataclass
class _Stream:
    first: int
    highest: int  # extended sequence number
    received: int = 0


@dataclass
class Receiving:
    """What one party's connection receives, counted from RTP headers."""

    video_pt: int
    audio_pt: int
    srtp: Callable[[], Any]  # the DTLS transport's receiving SRTP session, once up
    spot_frames: int
    on_video_frame: Callable[[], None]
    video_frames: int = 0
    audio_frames: int = 0
    spot: list[bytes] = field(default_factory=list)
    _streams: dict[int, _Stream] = field(default_factory=dict)
    _assembling: list[bytes] = field(default_factory=list)
    _assembling_ts: int | None = None

    def rtp(self, data: bytes) -> None:
        pt = data[1] & 0x7F
        seq = (data[2] << 8) | data[3]
        ssrc = int.from_bytes(data[8:12], "big")
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._streams[ssrc] = _Stream(first=seq, highest=seq)
        else:
            delta = (seq - stream.highest) & 0xFFFF
            if delta < 0x8000:
                stream.highest += delta
        stream.received += 1
        if pt == self.video_pt:
            if data[1] & 0x80:
                self.video_frames += 1
                self.on_video_frame()
            if len(self.spot) < self.spot_frames:
                self._keep(data)
        elif pt == self.audio_pt:
            self.audio_frames += 1

    def _keep(self, data: bytes) -> None:
        session = self.srtp()
        if session is None:
            return
        try:
            packet = RtpPacket.parse(session.unprotect(data))
            payload = depayload(_VP8, packet.payload) if packet.payload else b""
        except Exception:  # a packet the spot check cannot use
            self._assembling, self._assembling_ts = [], None
            return
        if packet.timestamp != self._assembling_ts:
            self._assembling, self._assembling_ts = [], packet.timestamp
        self._assembling.append(payload)
        if packet.marker:
            frame = b"".join(self._assembling)
            self._assembling, self._assembling_ts = [], None
            if self.spot or is_vp8_keyframe(frame):
                self.spot.append(frame)

    def loss(self) -> tuple[int, int]:
        """(packets received, packets lost) over every stream."""
        received = sum(s.received for s in self._streams.values())
        expected = sum(s.highest - s.first + 1 for s in self._streams.values())
        return received, max(0, expected - received)


def count(connection: Any, receiving: Receiving) -> None:
    _counted[connection] = receiving


def forget(connection: Any) -> None:
    _counted.pop(connection, None)


def payload_types(sdp: str) -> tuple[int, int]:
    """(VP8, Opus) payload types of an SDP answer."""
    video = re.search(r"a=rtpmap:(\d+) VP8/90000", sdp)
    audio = re.search(r"a=rtpmap:(\d+) opus/48000", sdp, re.IGNORECASE)
    if video is None or audio is None:
        raise RuntimeError("the answer has no VP8 or no Opus")
    return int(video[1]), int(audio[1])


def audio_packet_ms(sdp: str) -> int:
    """The Opus packet length an SDP answer asks for (``a=ptime`` in its audio section),
    ms; 20, browsers' default, without one."""
    for section in sdp.split("\r\nm=")[1:]:
        if section.startswith("audio "):
            found = re.search(r"\r\na=ptime:(\d+)", section)
            return int(found[1]) if found else 20
    return 20


class Pump:
    """Sends one kind of the clip in real time through ``out``, as aiortc's sender
    would send it: a keyframe request makes the next frame the clip's keyframe."""

    def __init__(self, kind: str, payloads: list[bytes], out: hooks.RtpOut, fps: int) -> None:
        self.kind = kind
        self.payloads = payloads
        self.out = out
        self.interval = 1 / fps if kind == "video" else 0.02
        self.step = 90_000 // fps if kind == "video" else 960
        self.sent = 0
        self.paused = asyncio.Event()
        self.keyframe_wanted = False
        self._seq = random.randrange(0x8000)  # noqa: S311 - RTP numbering, not a secret
        self._ts = random.getrandbits(32)
        self._picture_id = random.randrange(0x8000)  # noqa: S311

    def set_packet_ms(self, packet_ms: int, payloads: list[bytes]) -> None:
        """Audio: send ``payloads``, Opus packets of ``packet_ms`` each (before ``run``)."""
        self.payloads = payloads
        self.interval = packet_ms / 1000
        self.step = 48 * packet_ms

    async def run(self) -> None:
        start: float | None = None
        index = 0
        while not self.paused.is_set():
            if self.out.payload_type is None:
                await asyncio.sleep(0.01)  # aiortc has not started the sender yet
                continue
            if start is None:
                start = time.monotonic()
            await asyncio.sleep(max(0.0, start + self.sent * self.interval - time.monotonic()))
            if self.keyframe_wanted:
                self.keyframe_wanted = False
                index = 0  # the clip starts on its only keyframe
            data = self.payloads[index % len(self.payloads)]
            if self.kind == "video":
                chunks = Vp8Encoder._packetize(data, self._picture_id)
                self._picture_id = (self._picture_id + 1) & 0x7FFF
            else:
                chunks = [data]
            timestamp = (self._ts + self.sent * self.step) & 0xFFFFFFFF
            last = len(chunks) - 1
            for i, chunk in enumerate(chunks):
                packet = RtpPacket(payload_type=self.out.payload_type, marker=int(i == last),
                                   sequence_number=self._seq, timestamp=timestamp,
                                   ssrc=self.out.ssrc, payload=chunk)  # fmt: skip
                self.out.send(packet)
                self._seq = (self._seq + 1) & 0xFFFF
            self.sent += 1
            index += 1
