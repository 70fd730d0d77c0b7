"""Packets on the wire: sending packets built here on a sender's stream, handing media
datagrams on without a STUN parse, handling SRTP where it arrives, and the local
addresses ICE offers (see the package's docstring, points 5–7)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import struct
import time
import weakref
from collections.abc import Coroutine, Generator
from typing import Any

import aioice.ice
import pylibsrtp
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtp import RTP_HISTORY_SIZE, HeaderExtensionsMap, RtpPacket, is_rtcp

log = logging.getLogger(__name__)

_DTLS_RX_BYTES = "_RTCDtlsTransport__rx_bytes"
_DTLS_RX_PACKETS = "_RTCDtlsTransport__rx_packets"
_SENDER_HISTORY = "_RTCRtpSender__rtp_history"
_SENDER_NTP = "_RTCRtpSender__ntp_timestamp"
_SENDER_RTP_TS = "_RTCRtpSender__rtp_timestamp"
_SENDER_OCTETS = "_RTCRtpSender__octet_count"
_SENDER_PACKETS = "_RTCRtpSender__packet_count"
_SENDER_TRACK = "_RTCRtpSender__track"
_SENDER_ENCODER = "_RTCRtpSender__encoder"
_SENDER_RTP_STARTED = "_RTCRtpSender__rtp_started"
_SENDER_RTP_EXITED = "_RTCRtpSender__rtp_exited"
# Seconds from the NTP epoch (1900) to the Unix epoch (1970).
_NTP_UNIX = 2208988800
_MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
_ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
_AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
_HEADER = struct.Struct("!BBHLL")
_CSRC = struct.Struct("!L")
_EXT_HEADER = struct.Struct("!HH")


def ntp_now() -> int:
    """The wall clock as a 64-bit NTP timestamp (aiortc's goes through datetime, about
    ten times slower, and runs twice per packet sent)."""
    return int((time.time() + _NTP_UNIX) * 4294967296.0)


class RtpOut:
    """Sends RTP packets built here on ``sender``'s stream, as its own loop would.

    The packet's SSRC and payload type must be ``ssrc`` / ``payload_type``; ``send`` sets
    the MID and abs-send-time extensions (the browser's bandwidth estimate reads the
    latter), keeps the packet for retransmission, encrypts and sends it. Nothing is sent
    before DTLS is up and a pair is nominated (``send`` says False)."""

    def __init__(self, sender: RTCRtpSender) -> None:
        self._sender = sender
        self.ssrc: int = sender._ssrc
        self.payload_type: int | None = None  # known once aiortc starts the sender
        self.mid: str | None = None
        self.extensions = HeaderExtensionsMap()  # aiortc's, for its retransmissions
        self._history: dict[int, RtpPacket] = getattr(sender, _SENDER_HISTORY)
        # aiortc offers NACK for video codecs only (aiortc.codecs): nobody ever asks an
        # audio sender to resend, so its packets are not kept (~115 KB per session).
        self._keeps_history = sender.kind == "video"
        # The one-byte header extensions this stream negotiated (RFC 8285): the MID's
        # element is the same on every packet; abs-send-time and audio level change.
        self._mid_element = b""
        self._abs_send_time_id = 0
        self._audio_level_id = 0
        # Counted since they were last handed to the sender's reports.
        self._unreported_packets = 0
        self._unreported_octets = 0
        # The stream's numbering, whichever path sends: the highest sequence number sent
        # and its timestamp (None: nothing sent yet).
        self.last_seq: int | None = None
        self.last_ts = 0
        # The frame path's numbering (``send_frame``): the next sequence number and what
        # is added to a frame's timestamp; None when packets were forwarded since.
        self._frame_seq: int | None = None
        self._frame_ts_origin = 0
        self._step = 3000 if sender.kind == "video" else 960  # one frame at 30 fps / 20 ms
        original = sender.send

        async def send(parameters: Any) -> None:
            self.configure(parameters)
            await original(parameters)

        sender.send = send  # type: ignore[method-assign]
        # One numbering for the stream: frames the sender packetizes or encodes itself
        # (H.264, transcoding) go out through ``send_frame`` too, not aiortc's own loop,
        # whose numbering, its own random start, SRTP would refuse after ours.
        sender._run_rtp = self._run_rtp  # type: ignore[method-assign]

    def configure(self, parameters: Any) -> None:
        self.payload_type = parameters.codecs[0].payloadType
        self.mid = parameters.muxId
        self.extensions.configure(parameters)
        ids = {ext.uri: ext.id for ext in parameters.headerExtensions}
        mid_id = ids.get(_MID_URI)
        if mid_id and self.mid:
            mid = self.mid.encode("utf8")
            self._mid_element = bytes([(mid_id << 4) | (len(mid) - 1)]) + mid
        self._abs_send_time_id = ids.get(_ABS_SEND_TIME_URI) or 0
        self._audio_level_id = ids.get(_AUDIO_LEVEL_URI) or 0

    def wire(self, packet: RtpPacket, abs_send_time: int) -> bytes:
        """The packet as sent, before SRTP: what ``packet.serialize`` with the MID and
        ``abs_send_time`` set would give (a parse of it reads the same), without building
        the extensions anew for every packet."""
        ext = self._mid_element
        if self._abs_send_time_id:
            ext += bytes([(self._abs_send_time_id << 4) | 2]) + abs_send_time.to_bytes(3, "big")
        level = packet.extensions.audio_level
        if level is not None and self._audio_level_id:
            ext += bytes([self._audio_level_id << 4, (0x80 if level[0] else 0) | (level[1] & 0x7F)])
        padding = packet.padding_size
        first = 0x80 | (0x20 if padding else 0) | (0x10 if ext else 0) | len(packet.csrc)
        parts = [
            _HEADER.pack(
                first,
                (packet.marker << 7) | packet.payload_type,
                packet.sequence_number,
                packet.timestamp,
                packet.ssrc,
            )
        ]
        parts += [_CSRC.pack(csrc) for csrc in packet.csrc]
        if ext:
            ext += b"\x00" * (-len(ext) % 4)
            parts.append(_EXT_HEADER.pack(0xBEDE, len(ext) >> 2) + ext)
        parts.append(packet.payload)
        if padding:
            parts.append(os.urandom(padding - 1) + bytes([padding]))
        return b"".join(parts)

    def ready(self) -> bool:
        """Whether ``send`` can send now (the sender started, DTLS up, a pair nominated)."""
        if self.payload_type is None:
            return False
        dtls = self._sender.transport
        if dtls._state != DtlsState.CONNECTED or dtls._tx_srtp is None:
            return False
        pair = dtls.transport._connection._nominated.get(1)
        return pair is not None and pair.protocol.transport is not None

    def send(self, packet: RtpPacket) -> bool:
        """Send a packet already numbered on this stream (a forwarded one)."""
        self._frame_seq = None  # the frame path goes on from here when it next sends
        return self._send(packet)

    def send_frame(self, payloads: list[bytes], timestamp: int, audio_level: int | None) -> None:
        """Send one frame's payloads as aiortc's sender loop would (``timestamp``: its
        media clock from the frame's start), numbered on from what was sent last."""
        if self.payload_type is None:
            return
        if self._frame_seq is None:
            if self.last_seq is None:  # random origins, as aiortc's sender picks them
                self._frame_seq = secrets.randbelow(0x8000)
                self._frame_ts_origin = secrets.randbits(32)
            else:
                self._frame_seq = (self.last_seq + 1) & 0xFFFF
                self._frame_ts_origin = (self.last_ts + self._step - timestamp) & 0xFFFFFFFF
        stamp = (self._frame_ts_origin + timestamp) & 0xFFFFFFFF
        last = len(payloads) - 1
        for i, payload in enumerate(payloads):
            packet = RtpPacket(payload_type=self.payload_type, marker=int(i == last),
                               sequence_number=self._frame_seq, timestamp=stamp,
                               ssrc=self.ssrc, payload=payload)  # fmt: skip
            if audio_level is not None:
                packet.extensions.audio_level = (False, -audio_level)
            self._send(packet)
            self._frame_seq = (self._frame_seq + 1) & 0xFFFF

    async def _run_rtp(self, codec: Any) -> None:
        """Stands in for ``RTCRtpSender._run_rtp``: the same frames from the sender's
        track (``_next_encoded_frame`` packs or encodes them as before), numbered here."""
        sender = self._sender
        getattr(sender, _SENDER_RTP_STARTED).set()
        try:
            while True:
                if getattr(sender, _SENDER_TRACK) is None:
                    await asyncio.sleep(0.02)
                    continue
                frame = await sender._next_encoded_frame(codec)
                if frame is not None:
                    self.send_frame(frame.payloads, frame.timestamp, frame.audio_level)
        except (asyncio.CancelledError, ConnectionError, MediaStreamError):
            pass
        except Exception:
            log.exception("sending frames failed")
        # What aiortc's loop does on its way out (stop() waits for the last line).
        track = getattr(sender, _SENDER_TRACK)
        if track is not None:
            track.stop()
            setattr(sender, _SENDER_TRACK, None)
        setattr(sender, _SENDER_ENCODER, None)
        getattr(sender, _SENDER_RTP_EXITED).set()

    def _send(self, packet: RtpPacket) -> bool:
        sender = self._sender
        dtls = sender.transport
        if dtls._state != DtlsState.CONNECTED or dtls._tx_srtp is None:
            return False
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return False
        ntp = ntp_now()
        abs_send_time = (ntp >> 14) & 0x00FFFFFF
        # Kept for a retransmission, which aiortc serializes itself: it needs the MID and
        # the send time set on the packet.
        if self._keeps_history:
            packet.extensions.abs_send_time = abs_send_time
            packet.extensions.mid = self.mid
            self._history[packet.sequence_number % RTP_HISTORY_SIZE] = packet
        data = dtls._tx_srtp.protect(self.wire(packet, abs_send_time))
        pair.protocol.transport.sendto(data, pair.remote_addr)
        seq = packet.sequence_number
        # A late packet (a retransmission, reordering) leaves with its own number, behind.
        if self.last_seq is None or (seq - self.last_seq) & 0xFFFF < 0x8000:
            self.last_seq, self.last_ts = seq, packet.timestamp
        self._unreported_packets += 1
        self._unreported_octets += len(packet.payload)
        if packet.marker or self._unreported_packets >= 16:
            # What the sender's RTCP sender reports say (aiortc's loop keeps them per
            # packet; at the end of a frame, or every 16 packets, is as current for a
            # report sent every second or so).
            setattr(sender, _SENDER_NTP, ntp)
            setattr(sender, _SENDER_RTP_TS, packet.timestamp)
            octets = getattr(sender, _SENDER_OCTETS) + self._unreported_octets
            setattr(sender, _SENDER_OCTETS, octets)
            packets = getattr(sender, _SENDER_PACKETS) + self._unreported_packets
            setattr(sender, _SENDER_PACKETS, packets)
            self._unreported_packets = self._unreported_octets = 0
        return True


_original_host_addresses = aioice.ice.get_host_addresses
_original_datagram_received = aioice.ice.StunProtocol.datagram_received


def _datagram_received(self: Any, data: bytes, addr: tuple[Any, ...]) -> None:
    # RFC 7983: a first byte of 128–191 is RTP/RTCP, never STUN (whose first two bits are
    # 0): straight to the connection, as aioice does once the STUN parse has failed.
    if data and 127 < data[0] < 192:
        self.receiver.data_received(data, self.local_candidate.component)
        return
    _original_datagram_received(self, data, addr)


# ICE connections whose SRTP is handled where it arrives, and their DTLS transports.
# A weak reference to the transport: it holds the connection, and a strong one here would
# keep both alive for ever (a weak-keyed entry lives while its value refers to its key).
_eager: weakref.WeakKeyDictionary[Any, weakref.ref[RTCDtlsTransport]] = weakref.WeakKeyDictionary()
# A DTLS transport whose eager handling had to wait: later packets queue behind it.
_finishing: weakref.WeakKeyDictionary[RTCDtlsTransport, asyncio.Task[None]] = (
    weakref.WeakKeyDictionary()
)
_original_data_received = aioice.ice.Connection.data_received
_eager_failures = 0


def now_ms() -> int:
    """aiortc's ``clock.current_ms`` (milliseconds since the NTP epoch), without datetime."""
    return int((time.time() + _NTP_UNIX) * 1000)


def _data_received(self: Any, data: bytes, component: int) -> None:
    ref = _eager.get(self)
    dtls = ref() if ref is not None else None
    if (
        dtls is not None
        and 127 < data[0] < 192
        and dtls._rx_srtp is not None
        and self._queue.empty()
        and dtls not in _finishing
    ):
        _handle_srtp(dtls, data)
        return
    _original_data_received(self, data, component)


def _handle_srtp(dtls: RTCDtlsTransport, data: bytes) -> None:
    """What ``RTCDtlsTransport._recv_next`` does with an SRTP/SRTCP datagram."""
    global _eager_failures
    setattr(dtls, _DTLS_RX_BYTES, getattr(dtls, _DTLS_RX_BYTES) + len(data))
    setattr(dtls, _DTLS_RX_PACKETS, getattr(dtls, _DTLS_RX_PACKETS) + 1)
    arrival_time_ms = now_ms()
    coro: Coroutine[Any, Any, None]
    try:
        if is_rtcp(data):
            coro = dtls._handle_rtcp_data(dtls._rx_srtp.unprotect_rtcp(data))
        else:
            plain = dtls._rx_srtp.unprotect(data)
            coro = dtls._handle_rtp_data(plain, arrival_time_ms=arrival_time_ms)
    except pylibsrtp.Error:
        return  # as aiortc: a packet that does not decrypt is dropped
    try:
        waiting = coro.send(None)
    except StopIteration:
        return  # the usual case: handled without waiting
    except ConnectionError:
        return  # RTCP could not go out: the connection is closing (aiortc's task ends too)
    except Exception:
        # aiortc's receive task would die of it and take the connection with it; here the
        # packet is lost and the call goes on. Logged once, then counted.
        _eager_failures += 1
        if _eager_failures == 1 or _eager_failures % 1000 == 0:
            log.exception("media packet handling failed", extra={"failures": _eager_failures})
        return
    task = asyncio.ensure_future(_Resume(coro, waiting).run())
    _finishing[dtls] = task
    task.add_done_callback(lambda t: _finished(dtls, t))


def _finished(dtls: RTCDtlsTransport, task: asyncio.Task[None]) -> None:
    if _finishing.get(dtls) is task:
        del _finishing[dtls]
    if not task.cancelled() and task.exception() is not None:
        log.error("media packet handling failed", exc_info=task.exception())


class _Resume:
    """Finishes, in a task, a coroutine that was started outside one and had to wait:
    hands the task what it waits on, and resumes it when the task is woken."""

    def __init__(self, coro: Coroutine[Any, Any, None], waiting: Any) -> None:
        self._coro = coro
        self._waiting = waiting

    async def run(self) -> None:
        await self

    def __await__(self) -> Generator[Any, None, None]:
        waiting = self._waiting
        while True:
            try:
                yield waiting
            except BaseException as exc:  # the task is cancelled: into the coroutine
                try:
                    waiting = self._coro.throw(exc)
                except StopIteration:
                    return
                continue
            try:
                waiting = self._coro.send(None)
            except StopIteration:
                return


def receive_eagerly(pc: RTCPeerConnection) -> None:
    """Handle this connection's SRTP where each datagram arrives (call once both
    descriptions are set, when its transports are final). Needs ``eager_receive()``."""
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        connection = getattr(getattr(dtls, "transport", None), "_connection", None)
        if connection is not None:
            _eager[connection] = weakref.ref(dtls)


def eager_receive(enabled: bool = True) -> None:
    """Let connections registered with ``receive_eagerly`` be handled on arrival.
    Process-wide."""
    chosen = _data_received if enabled else _original_data_received
    setattr(aioice.ice.Connection, "data_received", chosen)  # noqa: B010


def fast_media_datagrams(enabled: bool = True) -> None:
    """Hand RTP/RTCP datagrams to the ICE connection without a STUN parse first.
    Process-wide (every connection of the process)."""
    chosen = _datagram_received if enabled else _original_datagram_received
    setattr(aioice.ice.StunProtocol, "datagram_received", chosen)  # noqa: B010


def restrict_host_addresses(addresses: list[str]) -> None:
    """Offer only these local addresses as ICE host candidates (empty: all, aioice's
    default, which never includes 127.0.0.1). Process-wide: one media node per process."""
    if not addresses:
        aioice.ice.get_host_addresses = _original_host_addresses
        return
    fixed = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in fixed if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses
