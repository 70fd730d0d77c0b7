"""The edge's pure parsers (issue 15, items 4 and 6): Range headers and JSON bodies refuse
what Python would raise on or let through, without a server around them."""

from __future__ import annotations

import json

import pytest

from server.domain.errors import InvalidInput
from server.http.json_body import MAX_DEPTH, parse_json
from server.http.streaming import _parse_range


@pytest.mark.parametrize(
    "header",
    [
        "bytes=" + "9" * 5000 + "-",
        "bytes=0-" + "9" * 5000,
        "bytes=-" + "9" * 5000,
        "bytes=" + "1" * 19 + "-",
        "bytes=\u0661-",  # another script's digit: int() would read it
    ],
)
def test_range_with_overlong_or_foreign_digits_is_unsatisfiable(header: str) -> None:
    assert _parse_range(header, 1000) == "bad"


def test_range_within_bounds_still_works() -> None:
    assert _parse_range("bytes=" + "0" * 18 + "-9", 1000) == (0, 9)
    assert _parse_range("bytes=-10", 1000) == (990, 999)
    assert _parse_range("bytes=10-" + "9" * 18, 1000) == (10, 999)


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,  # past the recursion limit
        "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
        '{"a": ' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1),
        '{"n": ' + "9" * 5000 + "}",  # int() raises past 4300 digits
        '{"n": ' + "9" * 19 + "}",
        '{"n": -' + "9" * 19 + "}",
        '{"n": NaN}',
        '{"n": Infinity}',
        '{"n": -Infinity}',
        '{"n": 1e999}',
        '{"n": -1e999}',
        '{"n": 1',
        "\ufeff{}",
    ],
)
def test_json_refused_as_json_invalid(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_json(text.encode())
    assert refused.value.code == "json_invalid" and refused.value.message_zh


def test_json_invalid_utf8_is_json_invalid() -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_json(b'{"a": "\xff"}')
    assert refused.value.code == "json_invalid"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"name": "\\ud800"}', "name"),
        ('{"a": {"b": ["ok", "x\\udc00"]}}', "a.b[1]"),
        ('{"a": "nul \\u0000"}', "a"),
        ('{"\\ud83d": 1}', "\ufffd"),
        ('"\\ud800"', "body"),
    ],
)
def test_unstorable_strings_are_refused_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_json(text.encode())
    assert refused.value.details == {"field": field}


def test_ordinary_json_passes_unchanged() -> None:
    nested = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert parse_json(nested.encode()) is not None
    # A surrogate pair (an emoji escaped as two \u escapes) is one character, not lone.
    value = {"n": 10**18 - 1, "f": 1.5e300, "s": "张三 \U0001f600", "t": True, "z": None}
    assert parse_json(json.dumps(value).encode()) == value
