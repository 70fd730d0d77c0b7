"""The compliance desk's screening API and page (A3): role compliance only, a reason for
every decision, the raw answer on demand and audited."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import AuditEntry
from tests.call_flow import as_staff
from tests.helpers import HTML, add_staff
from tests.screening_flow import WANG_WU, submitted

BASE = "/api/v1/compliance/screenings"


async def test_screening_desk_api(sclient: Any) -> None:
    investor = await submitted(sclient, WANG_WU, "13800138010")
    application_id = (await investor.app())["id"]
    await add_staff(sclient, "rev.api", {Role.REVIEWER})
    await add_staff(sclient, "comp.api", {Role.COMPLIANCE})

    h = await as_staff(sclient, "rev.api")
    assert (await sclient.get(BASE, headers=h)).status == 403
    assert (await sclient.get("/staff/compliance", headers=HTML)).status == 403

    h = await as_staff(sclient, "comp.api")
    page = await sclient.get("/staff/compliance", headers=HTML)
    assert page.status == 200
    html = await page.text()
    assert 'id="alerts"' in html and "/static/compliance/screening.js" in html

    items = (await (await sclient.get(BASE, headers=h)).json())["items"]
    assert [i["application_id"] for i in items] == [application_id]
    item = items[0]
    assert "440306199001011236" not in str(item) and "王五" not in str(item)
    assert item["matches"][0]["entry_id"] and "raw_response" not in item

    raw = await sclient.get(f"{BASE}/{item['id']}/raw", headers=h)
    assert raw.status == 200 and (await raw.json())["raw"]["result"] == "possible_match"
    async with sclient.app[RUNTIME].db.begin() as tx:
        viewed = await tx.scalar(
            select(AuditEntry).where(AuditEntry.action == "screening.raw_viewed")
        )
    assert viewed is not None and viewed.subject_id == item["id"]

    url = f"{BASE}/{item['id']}/decision"
    assert (await sclient.post(url, json={"decision": "clear"})).status == 403  # no CSRF
    resp = await sclient.post(url, json={"decision": "clear"}, headers=h)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "reason_required"
    resp = await sclient.post(url, json={"decision": "maybe", "reason": "why not"}, headers=h)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_decision"
    resp = await sclient.post(url, json={"decision": "clear", "reason": "Other person."}, headers=h)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["application_state"] == "identity_verified"
    resp = await sclient.post(url, json={"decision": "confirm", "reason": "Oops."}, headers=h)
    assert resp.status == 409
    assert (await (await sclient.get(f"{BASE}/nope/raw", headers=h)).json())["error"]
    assert (await (await sclient.get(BASE, headers=h)).json())["items"] == []
