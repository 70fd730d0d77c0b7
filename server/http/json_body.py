"""Reading a JSON object from a request body, with clear 400s (shared by the APIs)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from server.domain.errors import InvalidInput


async def read_json_object(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise InvalidInput(
            "content_type", "Send a JSON body (application/json).", "请求须为 JSON 格式。"
        )
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInput(
            "json_invalid", "The JSON body is malformed.", "JSON 格式错误。"
        ) from None
    if not isinstance(body, dict):
        raise InvalidInput("json_invalid", "The JSON body must be an object.", "JSON 须为对象。")
    return body
