"""JSON bodies: read into a pydantic model, with clear 400s (shared by the APIs).

The models validate (types, bounds, enums, finite numbers) and also describe the API in
its OpenAPI document, so what is documented and what is accepted cannot drift apart.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, ClassVar, NoReturn, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from server.domain.errors import InvalidInput
from server.domain.field_labels import label_en, label_zh
from server.http.bodies import read_bytes, storable, unstorable_field


class Body(BaseModel):
    """A JSON body the API reads or writes."""

    # Unknown keys are ignored, as before the models: apps may send more than we read.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)
    # The error code a field answers with when it fails, where it has long had its own
    # (clients and tests match on it); other fields answer with a generic code.
    field_codes: ClassVar[Mapping[str, str]] = {}


M = TypeVar("M", bound=BaseModel)


# A checked parse: Python's json takes NaN and Infinity, integers of any length (then
# fails past 4300 digits), 1e999 as infinity, nesting until the recursion limit, and lone
# surrogates in strings; none of these reaches a model or a handler.
MAX_DEPTH = 32
MAX_INT_DIGITS = 18  # int64 holds every 18-digit integer


def _refused(message: str, message_zh: str) -> InvalidInput:
    return InvalidInput("json_invalid", message, message_zh)


def _integer(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _refused(
            f"A number in the JSON body has more than {MAX_INT_DIGITS} digits.",
            "JSON 中的数字过长。",
        )
    return int(text)


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _refused("A number in the JSON body is out of range.", "JSON 中的数字超出范围。")
    return value


def _constant(name: str) -> NoReturn:
    raise _refused(
        f"The JSON body holds {name}; numbers must be finite.", "JSON 中的数字须为有限值。"
    )


def _check_tree(value: Any) -> None:
    """Nesting within MAX_DEPTH; every string and key storable (the first bad one named)."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, dict | list) and depth > MAX_DEPTH:
            raise _refused(
                f"The JSON body is nested more than {MAX_DEPTH} levels deep.",
                f"JSON 嵌套超过 {MAX_DEPTH} 层。",
            )
        if isinstance(node, dict):
            for key, item in node.items():
                where = f"{path}.{key}" if path else key
                if not storable(key):
                    raise unstorable_field(where)
                stack.append((item, where, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(node))
        elif isinstance(node, str) and not storable(node):
            raise unstorable_field(path or "body")


def parse_json(raw: bytes) -> Any:
    """The body's JSON, refused with 400 ``json_invalid`` (or naming the field) as above."""
    try:
        value = json.loads(
            raw.decode("utf-8"),
            parse_int=_integer,
            parse_float=_number,
            parse_constant=_constant,
        )
    except RecursionError:
        raise _refused(
            f"The JSON body is nested more than {MAX_DEPTH} levels deep.",
            f"JSON 嵌套超过 {MAX_DEPTH} 层。",
        ) from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        raise _refused("The JSON body is malformed.", "JSON 格式错误。") from None
    _check_tree(value)
    return value


async def read_json_object(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise InvalidInput(
            "content_type", "Send a JSON body (application/json).", "请求须为 JSON 格式。"
        )
    body = parse_json(await read_bytes(request))
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
    zh_label, en_label = label_zh(field), label_en(field)
    if kind == "missing":
        code, zh, en = "field_required", f"请填写“{zh_label}”。", f"Please fill in “{en_label}”."
    elif kind.endswith(("_type", "_parsing")):
        code, zh = "field_type", f"“{zh_label}”的类型不正确。"
        en = f"“{en_label}”: {error['msg']}."
    else:
        code, zh = "field_invalid", f"“{zh_label}”的值无效。"
        en = f"“{en_label}”: {error['msg']}."
    return InvalidInput(codes.get(field, code), en, zh, details={"field": field})
