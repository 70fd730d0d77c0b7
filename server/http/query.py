"""Query parameters checked at the edge: every value storable and of bounded length, every
integer parameter plain ASCII digits within its bounds (the database's integer type at
most), each refusal naming the parameter. What the values mean stays with the service."""

from __future__ import annotations

import re
from collections.abc import Mapping

from aiohttp import web
from multidict import MultiMapping

from server.domain.errors import InvalidInput
from server.http.bodies import shown_name, storable

# The database's INTEGER (PostgreSQL int4; ids and counts are never larger).
INT32_MAX = 2**31 - 1
# Longest value any parameter has a use for (dates, ids, cursors are far shorter).
MAX_VALUE_LENGTH = 1000
# int() would also take " 1", "1_0" and other scripts' digits; a parameter is 0-9 only.
_DIGITS = re.compile(r"[0-9]{1,10}")


def _refused(name: str, message: str, message_zh: str) -> InvalidInput:
    field = shown_name(name)
    return InvalidInput(
        "param_invalid",
        f"Query parameter '{field}': {message}",
        f"参数“{field}”{message_zh}",
        details={"field": field},
    )


def checked_query(
    request: web.Request, *, integers: Mapping[str, tuple[int, int]] | None = None
) -> MultiMapping[str]:
    """The request's query, refused with 400 ``param_invalid`` if a value is too long or
    unstorable, or an integer parameter (name → inclusive bounds) is not one. An empty
    integer parameter passes (the service reads it as absent)."""
    params = request.query
    for name, value in params.items():
        if len(name) > MAX_VALUE_LENGTH or not storable(name):
            raise _refused(name, "unknown parameter.", "无效。")
        if len(value) > MAX_VALUE_LENGTH:
            raise _refused(
                name,
                f"longer than {MAX_VALUE_LENGTH} characters.",
                f"超过 {MAX_VALUE_LENGTH} 个字符。",
            )
        if not storable(value):
            raise _refused(
                name, "contains a character that cannot be stored.", "含有无法保存的字符。"
            )
    for name, (low, high) in (integers or {}).items():
        for value in params.getall(name, []):
            if value and not (_DIGITS.fullmatch(value) and low <= int(value) <= high):
                raise _refused(
                    name,
                    f"a whole number from {low} to {high}.",
                    f"须为 {low} 至 {high} 之间的整数。",
                )
    return params
