"""The one frame reader every socket uses, and the relay's token bucket (issue 15 item 5)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import WSMessage, WSMsgType
from hypothesis import given
from hypothesis import strategies as st

from server.domain.errors import InvalidInput
from server.web.session_messages import TokenBucket
from server.web.ws_frames import MAX_DEPTH, MAX_SAFE_INTEGER, parse_message, read_frame


@pytest.mark.parametrize(
    "text",
    [
        "[1, 2]",
        '"ping"',
        "null",
        '{"type": "ping", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"type": "ping", "x": ' + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "}",
        '{"type": "ping", "n": ' + "9" * 5000 + "}",
        f'{{"type": "ping", "n": {MAX_SAFE_INTEGER + 1}}}',
        f'{{"type": "ping", "n": -{MAX_SAFE_INTEGER + 1}}}',
        '{"type": "ping", "n": NaN}',
        '{"type": "ping", "n": Infinity}',
        '{"type": "ping", "n": -Infinity}',
        '{"type": "ping", "n": 1e400}',
        '{"type": "\\ud800"}',
        '{"type": "ping", "\\udfff": 1}',
        '{"type": "ping", "s": ["\\ud83d"]}',
        '{"type": "ping", "s": "\\u0000"}',
    ],
)
def test_malformed_messages_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_message(text)
    assert refused.value.code == "bad_message"


@pytest.mark.parametrize("text", ['{"type": ["ping"]}', '{"type": {"a": 1}}', '{"kind": "ping"}'])
def test_a_type_that_is_not_text_is_unknown(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_message(text)
    assert refused.value.code == "unknown_message"


def test_text_that_is_not_json_is_bad_json() -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_message("{type: ping}")
    assert refused.value.code == "bad_json"


def test_binary_frames_are_refused() -> None:
    with pytest.raises(InvalidInput) as refused:
        read_frame(WSMessage(WSMsgType.BINARY, b'{"type": "ping"}', None))
    assert refused.value.code == "bad_message"


@pytest.mark.parametrize(
    "message",
    [
        {"type": "ping"},
        {"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "attempt": 3},
        {"type": "chat", "text": "你好 😀"},
        {"type": "mute", "audio": True, "video": False},
        {"type": "step_mark", "index": 2, "mark": "clear", "note": "", "n": -1.5},
        {"type": "ping", "x": [[[[[[[1]]]]]]], "n": MAX_SAFE_INTEGER},
    ],
)
def test_what_the_pages_send_is_read_unchanged(message: dict[str, Any]) -> None:
    assert read_frame(WSMessage(WSMsgType.TEXT, json.dumps(message), None)) == message


@given(st.text(max_size=200))
def test_any_text_is_a_message_or_an_invalid_input(text: str) -> None:
    try:
        message = parse_message(text)
    except InvalidInput:
        return
    assert isinstance(message, dict) and isinstance(message["type"], str)
    json.dumps(message, allow_nan=False).encode("utf-8")  # can be sent on as it is


def test_the_bucket_allows_a_burst_then_its_rate() -> None:
    bucket = TokenBucket(burst=3, rate=2.0, tokens=3)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(100.4) is False  # 0.8 of a token back
    assert bucket.take(100.5) is True
    assert [bucket.take(200.0) for _ in range(4)] == [True, True, True, False]  # capped
