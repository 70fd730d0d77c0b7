"""The load bench's light clients send Opus as a browser would after the server's answer
(issue 21: the answer asks for 40 ms packets, and the bench must measure that traffic)."""

from __future__ import annotations

import av

from bench.clients import opus_packets
from bench.light import audio_packet_ms
from server.media.session import with_audio_ptime

ANSWER = "v=0\r\nm=audio 9 X 111\r\na=mid:0\r\nm=video 9 X 96\r\na=mid:1\r\n"


def test_the_packet_length_is_read_from_the_answer() -> None:
    assert audio_packet_ms(ANSWER) == 20  # no ptime: the browsers' default
    assert audio_packet_ms(with_audio_ptime(ANSWER, 40)) == 40
    assert audio_packet_ms(with_audio_ptime(ANSWER, 60)) == 60
    video_ptime = "v=0\r\nm=video 9 X 96\r\na=ptime:60\r\nm=audio 9 X 111\r\n"
    assert audio_packet_ms(video_ptime) == 20


def test_clip_packets_decode_to_frames_of_that_length() -> None:
    for ms in (20, 40, 60):
        packets = opus_packets(1, ms)
        assert len(packets) == 1000 // ms
        decoder = av.CodecContext.create("opus", "r")
        lengths = {
            frame.samples * 1000 // frame.sample_rate
            for data in packets
            for frame in decoder.decode(av.Packet(data))
        }
        assert lengths == {ms}, (ms, lengths)
