"""The start-up check: every aiortc and aioice internal this package relies on is where
it was, or the server refuses to start (an upgrade must not silently record nothing)."""

from __future__ import annotations

import inspect
import re
from typing import Any

import aioice.ice
import aiortc
import aiortc.rate
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceTransport

AIORTC_VERSION = "1.16.0"


class InternalsChanged(RuntimeError):
    """aiortc no longer looks like the version this module was written for."""


def check_internals() -> None:
    if aiortc.__version__ != AIORTC_VERSION:
        raise InternalsChanged(
            f"server/media/hooks was written for aiortc {AIORTC_VERSION}, "
            f"found {aiortc.__version__}: re-check the receiver tap before upgrading"
        )

    src = inspect.getsource(RTCRtpReceiver)
    for needle in (
        "self.__decoder_queue.put((codec, encoded_frame))",
        "self.__decoder_queue",
        # _WatchedJitterBuffer stands in for the buffer and hands frames on as the receiver
        # would, mapping timestamps with its mapper.
        "self.__jitter_buffer.add(packet)",
        "self.__timestamp_mapper.map(",
        # Audio frames are made here from the packets' depayloaded data.
        "packet._data = depayload(",
    ):
        if needle not in src:
            raise InternalsChanged(f"RTCRtpReceiver no longer contains {needle!r}")
    for name in ("_capacity", "_prefetch", "_is_video", "_origin", "_packets", "remove"):
        if not hasattr(JitterBuffer(capacity=16), name):
            raise InternalsChanged(f"JitterBuffer.{name} is gone")
    frame = JitterFrame(data=b"", timestamp=0)
    if frame.data != b"" or frame.timestamp != 0:
        raise InternalsChanged("JitterFrame no longer holds data and timestamp")
    if "self._remove_frame(packet.sequence_number)" not in inspect.getsource(JitterBuffer):
        raise InternalsChanged("JitterBuffer no longer hands frames on via _remove_frame")
    if "self.__rtcp_ssrc = ssrc" not in src:
        raise InternalsChanged("RTCRtpReceiver no longer keeps its RTCP SSRC (FIR needs it)")
    for cls, name in (
        (RTCRtpReceiver, "_send_rtcp_pli"),
        (RTCRtpReceiver, "_send_rtcp"),
        (RTCRtpSender, "_send_keyframe"),
        (RTCRtpSender, "_handle_rtcp_packet"),
    ):
        if not callable(getattr(cls, name, None)):
            raise InternalsChanged(f"{cls.__name__}.{name} is gone")
    if not callable(getattr(aioice.ice, "get_host_addresses", None)):
        raise InternalsChanged("aioice.ice.get_host_addresses is gone")
    _check_send_path(src)
    _check_receive_path()
    _check_rate_counter()
    from server.media.hooks.transport import _original_datagram_received

    dgram = inspect.getsource(_original_datagram_received)
    for needle in (
        "message = stun.parse_message(data)",
        "self.receiver.data_received(data, self.local_candidate.component)",
    ):
        if needle not in dgram:
            raise InternalsChanged(f"StunProtocol.datagram_received lost {needle!r}")


def _check_rate_counter() -> None:
    """``lean_rate_counter`` replaces the class by name; the estimator must still make
    it so and use no more of it than ``LeanRateCounter`` offers."""
    from server.media.hooks.rtcp import _ORIGINAL_RATE_COUNTER

    for name in ("add", "rate", "reset"):
        if not callable(getattr(_ORIGINAL_RATE_COUNTER, name, None)):
            raise InternalsChanged(f"aiortc.rate.RateCounter.{name} is gone")
    source = inspect.getsource(aiortc.rate.RemoteBitrateEstimator)
    needle = "self.incoming_bitrate = RateCounter(1000, 8000)"
    if needle not in source:
        raise InternalsChanged(f"RemoteBitrateEstimator no longer contains {needle!r}")
    used = set(re.findall(r"self\.incoming_bitrate\.(\w+)", source))
    if not used <= {"add", "rate", "reset"}:
        raise InternalsChanged(f"RemoteBitrateEstimator uses RateCounter.{sorted(used)}")


def _check_receive_path() -> None:
    """What ``receive_eagerly`` does in place of the DTLS transport's receive task."""
    # aioice's own method, even once ``eager_receive`` has put ours in its place.
    from server.media.hooks.transport import _original_data_received

    for owner, needles in (
        (_original_data_received, ("self._queue.put_nowait((data, component))",)),
        (
            RTCDtlsTransport._recv_next,
            (
                "self.__rx_bytes += len(data)",
                "self.__rx_packets += 1",
                "elif first_byte > 127 and first_byte < 192 and self._rx_srtp:",
                "arrival_time_ms = clock.current_ms()",
                "if is_rtcp(data):",
                "data = self._rx_srtp.unprotect_rtcp(data)",
                "await self._handle_rtcp_data(data)",
                "data = self._rx_srtp.unprotect(data)",
                "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)",
                "except pylibsrtp.Error as exc:",
            ),
        ),
    ):
        source = inspect.getsource(owner)
        for needle in needles:
            if needle not in source:
                raise InternalsChanged(f"{owner.__qualname__} no longer contains {needle!r}")


def _check_send_path(receiver_src: str) -> None:
    """What ``RtpOut`` and ``on_packet`` rely on: the path aiortc's own sender takes,
    step by step, and where the sender keeps what its NACK answers and reports use."""

    if "packet._data = depayload(" not in receiver_src:
        raise InternalsChanged("RTCRtpReceiver no longer depayloads into packet._data")
    expected: list[tuple[Any, tuple[str, ...]]] = [
        (
            RTCRtpSender,
            (
                "self.__rtp_history[packet.sequence_number % RTP_HISTORY_SIZE]",
                "packet = self.__rtp_history.get(sequence_number % RTP_HISTORY_SIZE)",
                "self.__ntp_timestamp = clock.current_ntp_time()",
                "self.__rtp_timestamp = packet.timestamp",
                "self.__octet_count += len(payload)",
                "self.__packet_count += 1",
                "self.__rtp_header_extensions_map.configure(parameters)",
                "self._run_rtp(parameters.codecs[0])",
                "self.__mid = parameters.muxId",
                # RtpOut._run_rtp stands in for the sender's loop, as it does:
                "self.__rtp_started.set()",
                "enc_frame = await self._next_encoded_frame(codec)",
                "return RTCEncodedFrame(payloads, timestamp, audio_level)",
                "self.__track.stop()",
                "self.__encoder = None",
                "self.__rtp_exited.set()",
            ),
        ),
        (
            RTCDtlsTransport._send_rtp,
            ("data = self._tx_srtp.protect(data)", "await self.transport._send(data)"),
        ),
        (RTCIceTransport, ("self._send = self._connection.send",)),
        (aioice.ice.Connection.send, ("await self.sendto(data, 1)",)),
        (
            aioice.ice.Connection.sendto,
            (
                "active_pair = self._nominated.get(component)",
                "await active_pair.protocol.send_data(data, active_pair.remote_addr)",
            ),
        ),
        (aioice.ice.StunProtocol.send_data, ("self.transport.sendto(data, addr)",)),
    ]
    for owner, needles in expected:
        source = inspect.getsource(owner)
        for needle in needles:
            if needle not in source:
                raise InternalsChanged(f"{owner.__qualname__} no longer contains {needle!r}")
