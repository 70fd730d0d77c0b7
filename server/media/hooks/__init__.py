"""The only place that reaches into aiortc's and aioice's internals (this package).

aiortc exposes a receiver's media only as *decoded* frames, and its sender only tells
its own encoder about keyframe requests. Relaying and recording without re-encoding
(DESIGN: Media; A15: the recording is what each party sent) needs three things it does
not offer publicly:

1. the depacketized encoded frames, taken where the receiver hands them to its decoder
   thread (``RTCRtpReceiver.__decoder_queue``). We swap that queue for one that gives
   each frame to us instead, so nothing is decoded and no decoded frame queues up;
2. a way to send a picture-loss indication (PLI) upstream (``_send_rtcp_pli``);
3. a way to learn that a downstream browser asked our sender for a keyframe
   (``RTCRtpSender._send_keyframe``), to pass the request on to the sending party, and
   to make our sender's own encoder produce one when it transcodes;
4. the bitrate the downstream browser can take (REMB it sends our sender), and a way to
   hold the REMB our receiver sends the sending party to it (``_handle_rtcp_packet``,
   ``_send_rtcp``): a forwarded stream cannot be re-encoded to fit, so the sender must fit;
5. sending RTP packets we build on a sender's stream (issue 21: an SFU forwards packets,
   it does not re-assemble frames and packetize them again). ``RtpOut`` learns the
   sender's SSRC, payload type, MID and header extension ids when aiortc starts it,
   encrypts with the DTLS transport's SRTP session and sends on the nominated ICE pair
   synchronously (no task or coroutine per packet), keeps each packet in the sender's
   own history so aiortc answers the browser's NACKs from it (with RTX where
   negotiated), and keeps the counters its sender reports go from (RTCP SR);
6. a shorter way in for media datagrams: aioice tries to parse every datagram as STUN
   and hands it on only when that fails (an exception per RTP packet). RFC 7983 tells
   them apart by the first byte (128–191 is RTP or RTCP, STUN is 0–3), so
   ``fast_media_datagrams`` hands those on at once;
7. media handled where the datagram arrives (``receive_eagerly``): aioice queues every
   datagram for the DTLS transport's receive task, which wakes, decrypts and passes it
   on, one task wake-up per packet. For a connection registered here, an SRTP/SRTCP
   datagram that arrives while nothing is queued is decrypted and handled at once, as
   that task would have (``_recv_next``), in the datagram callback; if the handling
   has to wait (it sends RTCP, which never waits in practice), it is finished in a task;
8. the receiver's packets as they arrive, after SRTP, RTX unwrapping and depayloading
   (``on_packet``, called where they enter the jitter buffer);
9. what was lost on the way (issue 16): aiortc's ``JitterBuffer`` hands on only frames
   whose packets are all there, but when a lost packet is not retransmitted in time it
   *discards* the frame (``smart_remove``) and carries on with the next one, saying
   nothing to the receiver. We swap the receiver's jitter buffer for a subclass that
   notes the RTP sequence numbers each frame spans, so every frame handed on says how
   many packets went missing before it, and whether it starts mid-frame. For audio the
   subclass replaces aiortc's buffering too: aiortc's audio buffer discards the good
   packets queued before a gap (about 100 ms per lost Opus packet); here a lost packet
   costs only its own frame.

Written for aiortc 1.16.0 / aioice 0.10. ``check_internals`` verifies every name used
here and runs at start-up and in the test suite, so an upgrade that moves them fails
loudly instead of silently recording nothing.

``receive``: the tap, the watched jitter buffer and the packet hook (1, 8, 9);
``rtcp``: keyframe requests and REMB (2, 3, 4, 10); ``transport``: sending built packets,
the datagram fast path and eager SRTP handling, ICE host addresses (5, 6, 7);
``checks``: the start-up check.
"""

from server.media.hooks.checks import AIORTC_VERSION, InternalsChanged, check_internals
from server.media.hooks.receive import (
    AUDIO_LOSS_WAIT_PACKETS,
    AUDIO_LOSS_WAIT_SECONDS,
    INTACT,
    LOSS_WAIT_SECONDS,
    Arrival,
    FrameSink,
    PacketSink,
    WatchedSink,
    packet_data,
    starts_frame,
    tap_receiver,
    tap_receiver_watched,
)
from server.media.hooks.rtcp import (
    LeanRateCounter,
    clamp_remb,
    force_keyframe,
    lean_rate_counter,
    limit_remb,
    on_keyframe_request,
    on_remb,
    remb_bitrate,
    request_keyframe,
)
from server.media.hooks.transport import (
    RtpOut,
    eager_receive,
    fast_media_datagrams,
    now_ms,
    ntp_now,
    receive_eagerly,
    restrict_host_addresses,
)

__all__ = [
    "AIORTC_VERSION",
    "AUDIO_LOSS_WAIT_PACKETS",
    "AUDIO_LOSS_WAIT_SECONDS",
    "INTACT",
    "LOSS_WAIT_SECONDS",
    "Arrival",
    "FrameSink",
    "InternalsChanged",
    "LeanRateCounter",
    "PacketSink",
    "RtpOut",
    "WatchedSink",
    "check_internals",
    "clamp_remb",
    "eager_receive",
    "fast_media_datagrams",
    "force_keyframe",
    "lean_rate_counter",
    "limit_remb",
    "now_ms",
    "ntp_now",
    "on_keyframe_request",
    "on_remb",
    "packet_data",
    "receive_eagerly",
    "remb_bitrate",
    "request_keyframe",
    "restrict_host_addresses",
    "starts_frame",
    "tap_receiver",
    "tap_receiver_watched",
]
