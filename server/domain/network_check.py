"""The investor's pre-call check (issue 16): can their devices and network carry a call?

Pure: the measurements come in, a verdict and its reasons (zh/en, shown to the investor
and kept with the application) go out. Thresholds are configuration (``[intake]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    OK = "ok"
    WEAK = "weak"  # may join, warned: the picture may be poor or stall
    FAILED = "failed"  # may not join until a check passes


class NetworkPath(StrEnum):
    DIRECT = "direct"  # host or server-reflexive candidates: no relay in between
    RELAY = "relay"  # through TURN: works, adds a hop
    NONE = "none"  # no connection


class Protocol(StrEnum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"


@dataclass(frozen=True)
class Thresholds:
    # Below this upstream (kbit/s) or above this round trip (ms) a call is poor: weak.
    weak_upstream_kbps: int = 300
    weak_rtt_ms: int = 800
    # Below / above these a witness cannot see or talk to the investor usefully: failed.
    # Video at the lowest useful quality (~320×240) needs ~100 kbit/s.
    failed_upstream_kbps: int = 100
    failed_rtt_ms: int = 2000


@dataclass(frozen=True)
class Measurement:
    camera_ok: bool
    microphone_ok: bool
    connected: bool
    rtt_ms: int | None = None
    upstream_kbps: int | None = None
    webrtc: bool = True  # False: the browser has no RTCPeerConnection/getUserMedia


@dataclass(frozen=True)
class Reason:
    code: str
    zh: str
    en: str


_REASONS = {
    "no_webrtc": Reason(
        "no_webrtc",
        "此浏览器无法进行视频通话（不支持 WebRTC 或已被关闭）。请用最新版 Chrome、Edge、Safari"
        " 或 Firefox 打开本页面；在微信等应用内打开的，请选择“在浏览器中打开”；使用 Firefox 的，"
        "请确认没有关闭 WebRTC（about:config 中 media.peerconnection.enabled 为 true）。",
        "This browser cannot make video calls (WebRTC is missing or turned off). Open this "
        "page in the latest Chrome, Edge, Safari or Firefox; inside an app such as WeChat, "
        "choose “Open in browser”; in Firefox, make sure WebRTC is on "
        "(media.peerconnection.enabled is true in about:config).",
    ),
    "camera": Reason(
        "camera",
        "摄像头没有画面。请允许本网站使用摄像头，并关闭其他正在使用摄像头的应用。",
        "The camera shows no picture. Allow this site to use the camera and close other "
        "apps that use it.",
    ),
    "microphone": Reason(
        "microphone",
        "麦克风不可用。请允许本网站使用麦克风。",
        "The microphone is not available. Allow this site to use the microphone.",
    ),
    "no_connection": Reason(
        "no_connection",
        "无法与视频服务器建立连接：当前网络可能屏蔽了视频通话。请换用其他网络（例如手机流量或其他"
        " Wi-Fi）后重试。",
        "Could not connect to the video server: this network may block video calls. Try "
        "another network (mobile data or another Wi-Fi), then try again.",
    ),
    "no_video": Reason(
        "no_video",
        "已连接，但视频服务器没有收到您的画面。请换用其他网络后重试。",
        "Connected, but the video server received no picture from you. Try another "
        "network, then try again.",
    ),
    "upstream_too_low": Reason(
        "upstream_too_low",
        "上行网速太慢，无法进行视频通话。请靠近路由器或换用其他网络后重试。",
        "Your upload speed is too low for a video call. Move closer to the router or try "
        "another network.",
    ),
    "rtt_too_high": Reason(
        "rtt_too_high",
        "网络延迟太高，无法进行视频通话。请换用其他网络后重试。",
        "The network delay is too high for a video call. Try another network.",
    ),
    "upstream_low": Reason(
        "upstream_low",
        "上行网速偏慢，视频可能不够清晰。可以继续，也可以换用更好的网络。",
        "Your upload speed is low; the picture may be poor. You may continue, or try a "
        "better network.",
    ),
    "rtt_high": Reason(
        "rtt_high",
        "网络延迟偏高，通话可能有停顿。可以继续，也可以换用更好的网络。",
        "The network delay is high; the call may stall. You may continue, or try a better network.",
    ),
}


def reason(code: str) -> Reason:
    return _REASONS[code]


def decide(m: Measurement, t: Thresholds) -> tuple[Verdict, list[Reason]]:
    """The verdict and every reason for it (all of them, so one retry can fix them all)."""
    failed: list[str] = []
    weak: list[str] = []
    if not m.webrtc:
        # Nothing else could be tried: the one thing to fix is the browser (issue 17).
        return Verdict.FAILED, [_REASONS["no_webrtc"]]
    if not m.camera_ok:
        failed.append("camera")
    if not m.microphone_ok:
        failed.append("microphone")
    if not m.connected:
        failed.append("no_connection")
    else:
        upstream = m.upstream_kbps or 0
        if upstream <= 0:
            failed.append("no_video")
        elif upstream < t.failed_upstream_kbps:
            failed.append("upstream_too_low")
        elif upstream < t.weak_upstream_kbps:
            weak.append("upstream_low")
        if m.rtt_ms is None:
            pass  # no echo came back: the upstream figure still shows media got through
        elif m.rtt_ms > t.failed_rtt_ms:
            failed.append("rtt_too_high")
        elif m.rtt_ms > t.weak_rtt_ms:
            weak.append("rtt_high")
    if failed:
        return Verdict.FAILED, [_REASONS[c] for c in failed]
    if weak:
        return Verdict.WEAK, [_REASONS[c] for c in weak]
    return Verdict.OK, []


def path_of(candidate_type: str | None) -> NetworkPath:
    """The path from the local candidate type of the selected pair (browser getStats)."""
    if candidate_type == "relay":
        return NetworkPath.RELAY
    if candidate_type in ("host", "srflx", "prflx"):
        return NetworkPath.DIRECT
    return NetworkPath.NONE
