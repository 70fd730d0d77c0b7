"""Refusals name the field as the page labels it (issue 17): "请填写“有效期起始”。", not
the internal key 'valid_from', in Chinese and in English."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from server.domain.field_labels import FIELD_LABELS
from tests.intake_flow import API, PHONE, ZHANG_SAN, sign_in

TEMPLATE = Path(__file__).resolve().parents[2] / "server/web/templates/investor.html"


async def test_empty_validity_date_is_named_by_its_label(client: Any) -> None:
    inv, _ = await sign_in(client)
    resp = await inv.put("/application/identity", {**ZHANG_SAN, "valid_from": ""})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "field_required"
    assert error["message_zh"] == "请填写“有效期起始”。"
    assert error["message"] == "Please fill in “Valid from”."
    assert "valid_from" not in error["message"] + error["message_zh"]


async def test_bad_date_is_named_by_its_label(client: Any) -> None:
    inv, _ = await sign_in(client)
    resp = await inv.put("/application/identity", {**ZHANG_SAN, "birth_date": "31.12.1949"})
    error = (await resp.json())["error"]
    assert "出生日期" in error["message_zh"] and "Date of birth" in error["message"]
    assert "birth_date" not in error["message"] + error["message_zh"]


async def test_model_validation_names_the_field_by_its_label(client: Any) -> None:
    # The pydantic layer (server/http/json_body.read_model): the SMS code left out.
    await client.post(f"{API}/otp", json={"phone": PHONE})
    resp = await client.post(f"{API}/session", json={"phone": PHONE})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert "短信验证码" in error["message_zh"] and "SMS code" in error["message"]
    assert "'code'" not in error["message"]


def test_every_labelled_form_field_is_in_the_table() -> None:
    html = TEMPLATE.read_text(encoding="utf-8")
    pairs = re.findall(
        r'<label for="([a-z_]+)"><span class="zh">([^<]+)</span><span class="en">([^<]+)</span>',
        html,
    )
    assert len(pairs) > 10
    for field, zh, en in pairs:
        if field.startswith("precall"):
            continue
        assert field in FIELD_LABELS, field
        table_zh, table_en = FIELD_LABELS[field]
        # The table may drop "(optional)"; otherwise it is the page's label.
        assert zh.startswith(table_zh) and en.startswith(table_en), (field, zh, en)
