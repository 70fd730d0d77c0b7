"""What a WebSocket frame from a browser must look like before any handler sees it.

Every socket (investor, witness, session) reads its frames here, so a frame of the wrong
shape gets the same error reply everywhere and never reaches a handler: JSON text only
(no binary frames), an object with a string ``type``, nested at most ``MAX_DEPTH`` deep,
numbers finite and integers within JavaScript's safe range, strings valid Unicode without
NUL (a lone surrogate cannot be sent on as UTF-8; PostgreSQL refuses NUL in text).
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from aiohttp import WSMessage, WSMsgType

from server.domain.errors import InvalidInput

# Signalling messages are flat ({"type": "offer", "sdp": "..."}); a few levels spare.
MAX_DEPTH = 8
# Numbers a browser's JSON.parse reads exactly (Number.MAX_SAFE_INTEGER).
MAX_SAFE_INTEGER = 2**53 - 1
# Longest decimal literal of a safe integer, with its sign: longer is refused before
# int() is even asked (Python refuses over 4,300 digits with a ValueError of its own).
_MAX_INT_CHARS = len(str(-MAX_SAFE_INTEGER))


def bad_message(message: str, message_zh: str) -> InvalidInput:
    return InvalidInput("bad_message", message, message_zh)


def _refuse(message: str, message_zh: str) -> NoReturn:
    raise bad_message(message, message_zh)


def _parse_int(literal: str) -> int:
    value = int(literal) if len(literal) <= _MAX_INT_CHARS else None
    if value is None or abs(value) > MAX_SAFE_INTEGER:
        _refuse("Number out of range.", "数值超出范围。")
    return value


def _parse_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e400 reads as infinity
        _refuse("Number out of range.", "数值超出范围。")
    return value


def _parse_constant(_name: str) -> NoReturn:
    _refuse("NaN and Infinity are not JSON.", "NaN 和 Infinity 不是合法的 JSON。")


def _check_text(text: str) -> None:
    if "\x00" in text:
        _refuse("Text may not contain NUL.", "文本不得包含空字符。")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, written as \\ud800 in the JSON
        _refuse("Text is not valid Unicode.", "文本不是有效的 Unicode。")


def _check_tree(value: Any) -> None:
    """Depth and strings of a parsed value, without recursion."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                _refuse("Message nested too deeply.", "消息嵌套过深。")
            if isinstance(item, dict):
                for key, inner in item.items():
                    _check_text(key)
                    pending.append((inner, depth + 1))
            else:
                pending.extend((inner, depth + 1) for inner in item)


def parse_message(text: str) -> dict[str, Any]:
    """A text frame as a message: a JSON object with a string ``type``, or InvalidInput."""
    try:
        value = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except json.JSONDecodeError:
        raise InvalidInput("bad_json", "Messages are JSON.", "消息须为 JSON 格式。") from None
    except RecursionError:  # nested deeper than the parser's own stack allows
        _refuse("Message nested too deeply.", "消息嵌套过深。")
    _check_tree(value)
    if not isinstance(value, dict):
        _refuse("A message is a JSON object.", "消息须为 JSON 对象。")
    if not isinstance(value.get("type"), str):  # as for a type no socket knows
        raise InvalidInput("unknown_message", "Unknown message type.", "未知的消息类型。")
    return value


def read_frame(frame: WSMessage) -> dict[str, Any]:
    """A data frame from the client as a message (see ``parse_message``)."""
    if frame.type is not WSMsgType.TEXT:
        _refuse("Messages are JSON text, not binary.", "消息须为 JSON 文本，不支持二进制。")
    return parse_message(frame.data)


def text_field(
    message: dict[str, Any], name: str, *, default: str = "", max_length: int | None = None
) -> str:
    """A string field of a message (``default`` when absent); any other type is refused."""
    value = message.get(name, default)
    if not isinstance(value, str) or (max_length is not None and len(value) > max_length):
        _refuse(f"Field {name} must be text.", f"字段 {name} 须为文本。")
    return value
