"""Keyframe requests and bandwidth (REMB) between the parties' connections."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import aiortc.rate
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RtcpPsfbPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

_ACTIVE_SSRC = "_RTCRtpReceiver__active_ssrc"
_RTCP_SSRC = "_RTCRtpReceiver__rtcp_ssrc"
_FIR_SEQ = "_witness_fir_seq"  # ours, on the receiver: the last FIR sequence number


async def request_keyframe(receiver: RTCRtpReceiver, *, fir: bool = False) -> bool:
    """Send a PLI for every source the receiver is hearing; False if none yet.

    ``fir``: a Full Intra Request (RFC 5104) too. A still must not depend on one RTCP
    packet (issue 17): PLI and FIR are separate feedback messages a browser answers
    alike, and each FIR carries a new sequence number, so a repeated one is a new
    request, not a retransmission the sender may ignore."""
    ssrcs = list(getattr(receiver, _ACTIVE_SSRC, {}).keys())
    for ssrc in ssrcs:
        await receiver._send_rtcp_pli(ssrc)
        if fir:
            await _send_fir(receiver, ssrc)
    return bool(ssrcs)


async def _send_fir(receiver: RTCRtpReceiver, ssrc: int) -> None:
    rtcp_ssrc = getattr(receiver, _RTCP_SSRC, None)
    if rtcp_ssrc is None:
        return
    seq = (getattr(receiver, _FIR_SEQ, -1) + 1) & 0xFF
    setattr(receiver, _FIR_SEQ, seq)
    # FCI: the media sender's SSRC, the command sequence number, 24 reserved bits; the
    # packet's own media SSRC field is 0 for FIR (RFC 5104 §4.3.1.1).
    fci = ssrc.to_bytes(4, "big") + bytes([seq, 0, 0, 0])
    packet = RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=rtcp_ssrc, media_ssrc=0, fci=fci)
    await receiver._send_rtcp(packet)


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` whenever the far end sends this sender a PLI or FIR."""
    original = sender._send_keyframe

    def send_keyframe() -> None:
        original()
        callback()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


def force_keyframe(sender: RTCRtpSender) -> None:
    """Make the next picture the sender encodes a keyframe, as a PLI from the far end
    would (a callback set with ``on_keyframe_request`` hears of it too). No effect on
    packets the sender only forwards."""
    sender._send_keyframe()


def remb_bitrate(packet: Any) -> tuple[int, list[int]] | None:
    """(bits per second, media SSRCs) of a REMB packet; None for any other RTCP."""
    if not isinstance(packet, RtcpPsfbPacket) or packet.fmt != RTCP_PSFB_APP:
        return None
    try:
        return unpack_remb_fci(packet.fci)
    except ValueError:
        return None  # an APP feedback that is not REMB


def clamp_remb(packet: Any, limit: int | None) -> Any:
    """The same REMB with its bitrate lowered to ``limit`` (a copy); anything else as is."""
    remb = remb_bitrate(packet)
    if remb is None or limit is None or remb[0] <= limit:
        return packet
    return RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP,
        ssrc=packet.ssrc,
        media_ssrc=packet.media_ssrc,
        fci=pack_remb_fci(limit, remb[1]),
    )


def on_remb(sender: RTCRtpSender, callback: Callable[[int], None]) -> None:
    """Call ``callback(bps)`` whenever the far end sends this sender a REMB for it."""
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        remb = remb_bitrate(packet)
        if remb is not None and sender._ssrc in remb[1]:
            callback(remb[0])
        await original(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


def limit_remb(receiver: RTCRtpReceiver, limit: Callable[[], int | None]) -> None:
    """Every REMB this receiver sends says at most ``limit()`` bits per second."""
    original = receiver._send_rtcp

    async def send(packet: Any) -> None:
        await original(clamp_remb(packet, limit()))

    receiver._send_rtcp = send  # type: ignore[method-assign]


class LeanRateCounter:
    """aiortc's ``RateCounter`` (the incoming bitrate its REMB estimator reports), with
    the same results, kept as the packets of the window instead of one bucket object per
    millisecond.

    aiortc's keeps 1 000 bucket objects per video receiver (~100 KB a receiver, two per
    session) and, at every packet after a gap, steps through each millisecond of the gap
    one by one: ~66 iterations per frame at 15 fps. Here the window is a deque of
    (arrival ms, bytes), dropped from the left as it slides: a few entries per packet,
    whatever the gap (issue 21: per-session memory and per-packet CPU)."""

    __slots__ = ("_count", "_entries", "_origin_ms", "_scale", "_total", "_window_size")
    _entries: deque[tuple[int, int]]
    _origin_ms: int | None
    _count: int
    _total: int

    def __init__(self, window_size: int, scale: int = 8000) -> None:
        self._window_size = window_size
        self._scale = scale
        self.reset()

    def add(self, value: int, now_ms: int) -> None:
        if self._origin_ms is None:
            self._origin_ms = now_ms
        else:
            self._erase_old(now_ms)
        self._entries.append((now_ms, value))
        self._count += 1
        self._total += value

    def rate(self, now_ms: int) -> int | None:
        if self._origin_ms is not None:
            self._erase_old(now_ms)
            active_window_size = now_ms - self._origin_ms + 1
            if self._count > 0 and active_window_size > 1:
                return round(self._scale * self._total / active_window_size)
        return None

    def reset(self) -> None:
        self._entries = deque()
        self._origin_ms = None
        self._count = 0
        self._total = 0

    def _erase_old(self, now_ms: int) -> None:
        # As aiortc's: the window's start only moves forward, to now - window + 1.
        new_origin_ms = now_ms - self._window_size + 1
        assert self._origin_ms is not None
        if self._origin_ms < new_origin_ms:
            entries = self._entries
            while entries and entries[0][0] < new_origin_ms:
                self._total -= entries.popleft()[1]
                self._count -= 1
            self._origin_ms = new_origin_ms


_ORIGINAL_RATE_COUNTER = aiortc.rate.RateCounter


def lean_rate_counter(enabled: bool = True) -> None:
    """Have aiortc's REMB estimators count the incoming bitrate with ``LeanRateCounter``.
    Process-wide, for receivers created from now on."""
    chosen = LeanRateCounter if enabled else _ORIGINAL_RATE_COUNTER
    aiortc.rate.RateCounter = chosen  # type: ignore[misc,assignment]
