"""A body's field that fails its model answers the code that field has long answered with
(clients match on them), not the generic field_required/field_type/field_invalid."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from server.api.schemas import Decision, DisclosureAck, OpenedDocument
from server.http.json_body import Body, invalid_field


def _code(model: type[Body], body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return invalid_field(caught.value.errors()[0], model.field_codes).code


@pytest.mark.parametrize("body", [{}, {"item": 5}, {"item": "x" * 65}])
def test_an_unreadable_opened_item_is_bad_item(body: dict[str, Any]) -> None:
    assert _code(OpenedDocument, body) == "bad_item"


@pytest.mark.parametrize("reason", [5, ["other"], "x" * 65])
def test_an_unreadable_reject_reason_is_reason_required(reason: object) -> None:
    assert _code(Decision, {"decision": "reject", "reason_code": reason}) == "reason_required"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"version": "1"}, "disclosure_not_scrolled"),
        ({"version": "1", "scrolled_to_end": 1}, "disclosure_not_scrolled"),
        ({"scrolled_to_end": True}, "disclosure_version_mismatch"),
        ({"version": 1, "scrolled_to_end": True}, "disclosure_version_mismatch"),
    ],
)
def test_an_unreadable_acknowledgement_keeps_its_codes(body: dict[str, Any], code: str) -> None:
    assert _code(DisclosureAck, body) == code
