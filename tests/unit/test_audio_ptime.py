"""The answer asks the browser for longer Opus packets (issue 21: per-packet work is the
relay's cost). What Chromium and Firefox then send is checked in tests/e2e."""

from __future__ import annotations

from server.media.session import with_audio_ptime

ANSWER = (
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"
    "a=rtpmap:111 opus/48000/2\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
)


def _sections(sdp: str) -> list[str]:
    return sdp.split("\r\nm=")


def test_the_audio_section_and_only_it_asks_for_the_packet_length() -> None:
    out = with_audio_ptime(ANSWER, 40)
    session, audio, video = _sections(out)
    assert audio.endswith("a=rtpmap:111 opus/48000/2\r\na=ptime:40")
    assert "ptime" not in session and "ptime" not in video
    # Nothing else changed, and the SDP still ends its last line.
    assert out.replace("a=ptime:40\r\n", "") == ANSWER
    assert out.endswith("\r\n")


def test_audio_last_keeps_its_line_ending() -> None:
    video_first = "v=0\r\nm=video 9 X 96\r\na=mid:0\r\nm=audio 9 X 111\r\na=mid:1\r\n"
    assert with_audio_ptime(video_first, 60) == video_first + "a=ptime:60\r\n"


def test_browsers_default_and_an_existing_ptime_are_left_alone() -> None:
    assert with_audio_ptime(ANSWER, 20) == ANSWER
    once = with_audio_ptime(ANSWER, 40)
    assert with_audio_ptime(once, 60) == once
    no_audio = "v=0\r\nm=video 9 X 96\r\na=mid:0\r\n"
    assert with_audio_ptime(no_audio, 40) == no_audio
