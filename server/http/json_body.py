"""JSON bodies: read into a pydantic model, with clear 400s (shared by the APIs).

The models validate (types, bounds, enums, finite numbers) and also describe the API in
its OpenAPI document, so what is documented and what is accepted cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from server.domain.errors import InvalidInput


class Body(BaseModel):
    """A JSON body the API reads or writes."""

    # Unknown keys are ignored, as before the models: apps may send more than we read.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)
    # The error code a field answers with when it fails, where it has long had its own
    # (clients and tests match on it); other fields answer with a generic code.
    field_codes: ClassVar[Mapping[str, str]] = {}


M = TypeVar("M", bound=BaseModel)


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


async def read_model(request: web.Request, model: type[M]) -> M:
    """The request's JSON body as ``model``; the first failing field answers the 400."""
    raw = await read_json_object(request)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        codes: Mapping[str, str] = getattr(model, "field_codes", {})
        raise invalid_field(exc.errors()[0], codes) from None


def invalid_field(error: ErrorDetails, codes: Mapping[str, str]) -> InvalidInput:
    field = str(error["loc"][0]) if error["loc"] else "body"
    kind = error["type"]
    if kind == "missing":
        code, zh = "field_required", f"请填写“{field}”。"
    elif kind.endswith(("_type", "_parsing")):
        code, zh = "field_type", f"“{field}”的类型不正确。"
    else:
        code, zh = "field_invalid", f"“{field}”的值无效。"
    return InvalidInput(
        codes.get(field, code), f"'{field}': {error['msg']}.", zh, details={"field": field}
    )
