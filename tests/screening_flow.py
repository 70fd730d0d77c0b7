"""Investors and staff for the AML screening tests (A3): the built-in sandbox lists hold
王五 (a possible match) and 赵六 (a match); 张三 is clear."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import Application, Staff
from tests.helpers import add_staff
from tests.intake_flow import ZHANG_SAN, Investor, complete_intake, sign_in

WANG_WU = {**ZHANG_SAN, "name": "王五", "id_number": "440306199001011236", "sex": "M"}
WANG_WU["birth_date"] = "1990-01-01"
ZHAO_LIU = {**ZHANG_SAN, "name": "赵六", "id_number": "310104197506150045", "sex": "F"}
ZHAO_LIU["birth_date"] = "1975-06-15"
NEUTRAL_WORDS = ("list", "sanction", "match", "名单", "制裁", "命中")


async def submitted(client: Any, identity: dict[str, Any], phone: str) -> Investor:
    investor, _ = await sign_in(client, phone)
    await complete_intake(investor, identity)
    resp = await investor.post("/application/submit")
    assert resp.status == 200, await resp.text()
    return investor


async def state_of(client: Any, application_id: str) -> str:
    async with client.app[RUNTIME].db.begin() as tx:
        return (await tx.get(Application, application_id)).state  # type: ignore[union-attr]


async def staff(client: Any, username: str, roles: set[Role]) -> int:
    await add_staff(client, username, roles)
    async with client.app[RUNTIME].db.begin() as tx:
        found = await tx.scalar(select(Staff.id).where(Staff.username == username))
    assert found is not None
    return found


def assert_neutral(body: dict[str, Any]) -> None:
    error = body["error"]
    text = f"{error['message']} {error['message_zh']}".lower()
    assert not any(word in text for word in NEUTRAL_WORDS), text
