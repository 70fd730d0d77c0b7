"""A20–A22 over the investor API: a holder's entrance, the account system's check before
the call, the service carried out after approval (and callback) with its outcome per
account, the notice and confirmation, online cancellation, and every refusal audited
with nothing changed. (The call itself: test_witnessing_flow.py; the browser:
e2e/test_holder_service_browser.py.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from server.app import create_app
from server.http.keys import RUNTIME
from server.services.intake.view import application_view
from server.store.models import (
    Application,
    AuditEntry,
    Notification,
    ServiceOutcome,
)
from tests.intake_flow import API, Investor, jpeg
from tests.integration.test_callbacks import callback_staff, state_of
from tests.server_config import make_config


def person(name: str, id_number: str, **extra: Any) -> dict[str, Any]:
    born = f"{id_number[6:10]}-{id_number[10:12]}-{id_number[12:14]}"
    return {
        "name": name,
        "document_type": "resident_id",
        "id_number": id_number,
        "sex": "M" if int(id_number[16]) % 2 else "F",
        "birth_date": born,
        "valid_from": "2016-01-01",
        "valid_until_long_term": True,
        "nationality": "CHN",
        "address": "上海市黄浦区中山东一路1号",
        "occupation": "retired",
        **extra,
    }


# The sandbox's holders (server/content/sandbox_holders.toml), known to the registry too.
SUN_QI = person("孙七", "320102198807070026")
ZHOU_BA = person("周八", "330106197203180059")
LI_SI = person("李四", "110101200001010010")
ZHANG_SAN = person("张三", "11010519491231002X", email="zhang@example.cn")
CHAN_TAI_MAN = person(
    "陈大文",
    "810000198503150033",
    document_type="hmt_residence_permit",
    nationality="HKG",
    valid_until_long_term=False,
    valid_until="2031-01-01",
)


async def _client(aiohttp_client: Any, tmp_path: Path, db_url: str, **services: Any) -> TestClient:  # type: ignore[type-arg]
    cfg = make_config(
        tmp_path,
        db_url,
        identity={"sandbox_latency_ms": 0},
        accounts={"sandbox_latency_ms": 0},
        # Holders sign in more than once a minute here.
        intake={"otp_resend_seconds": 0},
        **({"services": services} if services else {}),
    )
    return await aiohttp_client(create_app(cfg))


async def sign_in(
    client: Any, phone: str, business_type: str, method: str = "witnessed"
) -> tuple[int, Any]:
    sent = await client.post(f"{API}/otp", json={"phone": phone})
    code = (await sent.json())["sandbox_code"]
    resp = await client.post(
        f"{API}/session",
        json={"phone": phone, "code": code, "business_type": business_type, "method": method},
    )
    return resp.status, await resp.json()


async def holder(
    client: Any, phone: str, business_type: str, method: str = "witnessed"
) -> Investor:
    status, body = await sign_in(client, phone, business_type, method)
    assert status == 201, body
    assert body["application"]["business_type"] == business_type
    assert body["application"]["method"] == method
    return Investor(client, body["csrf_token"])


async def verified(inv: Investor, identity: dict[str, Any], **service: Any) -> dict[str, Any]:
    """Identity with the account, images and photo, then the registry check."""
    resp = await inv.put("/application/identity", {**identity, **service})
    assert resp.status == 200, await resp.text()
    view = (await resp.json())["application"]
    assert view["next_step"] == "id_images", view
    for kind in ("id_front", "id_back", "frontal_photo"):
        assert (await inv.upload(kind, jpeg())).status == 200
    # A21: the identity check comes next; the opening's questionnaire and disclosure don't.
    assert (await inv.app())["next_step"] == "check"
    resp = await inv.post("/application/submit")
    assert resp.status == 200, await resp.text()
    view = (await resp.json())["application"]
    assert view["state"] == "identity_verified", view
    return view


async def approve(client: Any, app_id: str) -> None:
    """The call and review are tested elsewhere; here the application is approved and
    aftercare runs as the review desk runs it."""
    rt = client.app[RUNTIME]
    async with rt.db.begin() as s:
        app = await s.get(Application, app_id)
        assert app is not None
        app.state = "approved"
    await rt.aftercare.after_approval(app_id, actor="staff:test")


async def audits(client: Any, action: str) -> list[AuditEntry]:
    async with client.app[RUNTIME].db.begin() as s:
        return list((await s.scalars(select(AuditEntry).where(AuditEntry.action == action))).all())


async def outcomes(client: Any, app_id: str) -> list[tuple[str, str, str | None]]:
    async with client.app[RUNTIME].db.begin() as s:
        rows = await s.scalars(
            select(ServiceOutcome)
            .where(ServiceOutcome.application_id == app_id)
            .order_by(ServiceOutcome.created_at, ServiceOutcome.id)
        )
        return [(r.account_masked, r.status, r.error_code) for r in rows]


async def test_a22_holder_cancels_after_callback_with_notice_and_confirmation(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url)
    inv = await holder(client, "13900139006", "cancel")
    # Another person's account (周八's) with this identity: one answer, audited, nothing kept.
    resp = await inv.put("/application/identity", {**SUN_QI, "account_number": "A100000101"})
    body = await resp.json()
    assert resp.status == 403 and body["error"]["code"] == "not_account_holder", body
    assert body["error"]["message_zh"] and body["error"]["details"]["field"] == "account_number"
    refused = await audits(client, "intake.holder_refused")
    assert len(refused) == 1 and "A100000101" not in str(refused[0].details)
    view = await inv.app()
    assert view["identity"] is None and view["service"]["accounts"] == []
    assert view["next_step"] == "identity"
    # A holder's service needs the account number at all.
    resp = await inv.put("/application/identity", SUN_QI)
    assert (await resp.json())["error"]["code"] == "account_number_invalid"

    view = await verified(inv, SUN_QI, account_number="181000000201")
    service = view["service"]
    assert service["label_zh"] == "注销证券账户" and service["method"] == "witnessed"
    # 销户: every open account, masked, each passing the account system's dry run.
    assert [a["market"] for a in service["accounts"]] == ["unified", "sh", "sz"]
    assert all(a["precheck"] == {"ok": True, "error_code": None} for a in service["accounts"])
    assert "181000000201" not in str(view) and "number" not in service["accounts"][0]
    app_id = view["id"]

    await approve(client, app_id)
    assert await state_of(client, app_id) == "approved"  # cancel waits for its callback
    h = await callback_staff(client)
    work = await (await client.get("/api/v1/callbacks")).json()
    item = next(i for i in work["items"] if i["application_id"] == app_id)
    assert item["business_type"] == "cancel"
    got = await client.post(
        f"/api/v1/callbacks/{app_id}", json={"outcome": "confirmed", "notes": "本人确认"}, headers=h
    )
    assert got.status == 200, await got.text()
    assert (await got.json())["state"] == "completed"
    assert await outcomes(client, app_id) == [
        ("18******0201", "done", None),
        ("A1****0201", "done", None),
        ("01****0201", "done", None),
    ]
    async with client.app[RUNTIME].db.begin() as s:
        notes = (
            await s.scalars(select(Notification).where(Notification.application_id == app_id))
        ).all()
    assert [n.subject for n in notes] == ["service_concluded"]
    assert "注销证券账户" in notes[0].body and "已办理" in notes[0].body
    # The account system no longer lists them as open: a second cancellation is refused.
    client.session.cookie_jar.clear()
    again = await holder(client, "13900139006", "cancel")
    resp = await again.put("/application/identity", {**SUN_QI, "account_number": "181000000201"})
    assert (await resp.json())["error"]["code"] == "account_already_cancelled"

    client.session.cookie_jar.clear()
    inv = await holder(client, "13900139006", "query")
    await verified(inv, SUN_QI, account_number="A100000201")


async def test_refusal_shown_before_the_call_and_partial_outcome_recorded(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url)
    inv = await holder(client, "13900139005", "cancel")
    view = await verified(inv, ZHOU_BA, account_number="0100000101")
    checks = {a["market"]: a["precheck"] for a in view["service"]["accounts"]}
    # Holdings remain in Shanghai: the investor (and the desk, and the reviewer) see why.
    assert checks["sh"]["ok"] is False and checks["sh"]["error_code"] == "holdings_remain"
    assert checks["sh"]["message_zh"].startswith("账户内仍有证券持仓")
    assert checks["sh"]["message_en"].startswith("The account still holds securities")
    assert checks["sz"]["ok"] is True
    assert checks["unified"]["error_code"] == "sub_accounts_open"
    app_id = view["id"]

    await approve(client, app_id)
    h = await callback_staff(client)
    got = await client.post(f"/api/v1/callbacks/{app_id}", json={"outcome": "confirmed"}, headers=h)
    assert (await got.json())["state"] == "completed"  # one of three: partial, recorded so
    assert sorted(await outcomes(client, app_id)) == [
        ("01****0101", "done", None),
        ("18******0101", "refused", "sub_accounts_open"),
        ("A1****0101", "refused", "holdings_remain"),
    ]
    client.session.cookie_jar.clear()
    _status, body = await sign_in(client, "13900139005", "cancel")
    # A finished application is not resumed: the holder starts anew (and sees nothing old).
    assert body["application"]["id"] != app_id


async def test_every_account_refused_ends_service_refused(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url)
    inv = await holder(client, "13900139001", "cancel")
    # 张三 names one account only: the one with a designated-trading relationship.
    view = await verified(inv, ZHANG_SAN, account_number="181000000501", accounts=["A100000501"])
    assert [a["precheck"]["error_code"] for a in view["service"]["accounts"]] == [
        "designated_trading"
    ]
    app_id = view["id"]
    await approve(client, app_id)
    h = await callback_staff(client)
    got = await client.post(f"/api/v1/callbacks/{app_id}", json={"outcome": "confirmed"}, headers=h)
    assert (await got.json())["state"] == "service_refused"
    client.session.cookie_jar.clear()
    pdf = await client.get(f"{API}/application/confirmation.pdf")
    assert pdf.status == 401  # signed out by the staff login above: no one else's PDF


async def test_account_system_down_changes_nothing_and_the_retry_succeeds(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url, callback=["transfer_relationship"])
    inv = await holder(client, "13900139006", "cancel")
    view = await verified(inv, SUN_QI, account_number="0100000201", accounts=["0100000201"])
    app_id = view["id"]
    # Confirmation PDF only once something was done.
    pdf = await client.get(f"{API}/application/confirmation.pdf")
    assert pdf.status == 404
    services = client.app[RUNTIME].aftercare.services
    services.accounts._failure_rate = 1.0  # the sandbox answers "unavailable"
    await approve(client, app_id)  # the approval stands; the service waits for a retry
    assert await state_of(client, app_id) == "approved" and await outcomes(client, app_id) == []
    assert len(await audits(client, "service.attempt_failed")) == 1
    h = await callback_staff(client)
    work = await (await client.get("/api/v1/callbacks")).json()
    assert [(i["application_id"], i["carry_out_due"]) for i in work["items"]] == [(app_id, True)]
    page = await (await client.get("/staff/callbacks", headers={"Accept": "text/html"})).text()
    assert f"/staff/callbacks/{app_id}/carry-out" in page
    retry = await client.post(f"/api/v1/services/{app_id}/carry-out", headers=h)
    assert retry.status == 503
    assert (await retry.json())["error"]["code"] == "account_system_error"
    assert len(await audits(client, "service.attempt_failed")) == 2
    services.accounts._failure_rate = 0.0
    retry = await client.post(f"/api/v1/services/{app_id}/carry-out", headers=h)
    assert retry.status == 200, await retry.text()
    assert (await retry.json())["state"] == "completed"
    again = await client.post(f"/api/v1/services/{app_id}/carry-out", headers=h)
    assert again.status == 409  # done once: never twice
    assert await outcomes(client, app_id) == [("01****0201", "done", None)]
    assert (await (await client.get("/api/v1/callbacks")).json())["items"] == []
    # What the holder's page shows (their cookie went with the staff login above).
    rt = client.app[RUNTIME]
    async with rt.db.begin() as tx:
        view = await application_view(tx=tx, application_id=app_id, protector=rt.protector)
    assert view["state"] == "completed"
    assert view["service"]["outcomes"] == [
        {"account_masked": "01****0201", "status": "done", "error_code": None}
    ]
    pdf = await rt.notices.confirmation_pdf(app_id)
    assert pdf.startswith(b"%PDF")


async def test_a22_online_cancellation_only_for_accounts_opened_online(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url)
    # 孙七's accounts were opened under a witness: not closed with less.
    inv = await holder(client, "13900139006", "cancel", method="online")
    resp = await inv.put("/application/identity", {**SUN_QI, "account_number": "181000000201"})
    body = await resp.json()
    assert resp.status == 409 and body["error"]["code"] == "method_not_allowed", body
    assert len(await audits(client, "intake.holder_refused")) == 1
    assert (await inv.app())["identity"] is None

    client.session.cookie_jar.clear()
    inv = await holder(client, "13900139004", "cancel", method="online")
    view = await verified(inv, LI_SI, account_number="181000000401", accounts=["A100000401"])
    app_id = view["id"]
    resp = await inv.post("/application/queue")
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "online_service_no_call"
    resp = await inv.post("/application/online-confirmation", {"confirm": False})
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "confirmation_required"
    resp = await inv.post("/application/online-confirmation", {"confirm": True})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["application"]["state"] == "approved"  # callback next
    h = await callback_staff(client)
    got = await client.post(f"/api/v1/callbacks/{app_id}", json={"outcome": "confirmed"}, headers=h)
    assert (await got.json())["state"] == "completed"
    async with client.app[RUNTIME].db.begin() as s:
        method = await s.scalar(
            select(ServiceOutcome.method).where(ServiceOutcome.application_id == app_id)
        )
    assert method == "online"


async def test_a_service_not_offered_is_refused_audited_and_changes_nothing(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(
        aiohttp_client,
        tmp_path,
        db_url,
        witnessed=["open", "cancel", "query"],
        online=["cancel"],
        callback=["cancel"],
    )
    options = await (await client.get(f"{API}/options")).json()
    assert [(s["id"], s["methods"]) for s in options["services"]] == [
        ("open", ["witnessed"]),
        ("cancel", ["witnessed", "online"]),
        ("query", ["witnessed"]),
    ]
    async with client.app[RUNTIME].db.begin() as s:
        before = await s.scalar(select(func.count()).select_from(Application))
    for kind, method in (("reactivate", "witnessed"), ("query", "online"), ("fly", "witnessed")):
        status, body = await sign_in(client, "13900139006", kind, method)
        assert status == 403 and body["error"]["code"] == "service_not_offered", body
        assert body["error"]["message_zh"] and body["error"]["message"]
    status, body = await sign_in(client, "13900139006", "open", "by_post")
    assert status == 400 and body["error"]["code"] == "method_invalid"
    assert len(await audits(client, "intake.service_refused")) == 3
    async with client.app[RUNTIME].db.begin() as s:
        assert await s.scalar(select(func.count()).select_from(Application)) == before


OTHER_SERVICES = [
    # (business, holder, identity-step extras, what the account system reports changed)
    (
        "change_info",
        SUN_QI,
        {"account_number": "181000000201", "details": {"address": "杭州市西湖区1号"}},
        {"fields": ["address"]},
    ),
    (
        "reactivate",
        CHAN_TAI_MAN,
        {"account_number": "A100000301"},
        {"status": ["dormant", "normal"]},
    ),
    (
        "lift_loss_report",
        CHAN_TAI_MAN,
        {"account_number": "0100000301"},
        {"status": ["loss_reported", "normal"]},
    ),
    ("query", SUN_QI, {"account_number": "0100000201"}, {}),
    (
        "transfer_relationship",
        SUN_QI,
        {"account_number": "A100000201", "details": {"to_agency": "示例二证券"}},
        None,
    ),
    (
        "beijing_mark",
        SUN_QI,
        {"account_number": "0100000201", "details": {"action": "add"}},
        {"beijing_mark": [False, True]},
    ),
]


@pytest.mark.parametrize(("kind", "identity", "service", "changed"), OTHER_SERVICES)
async def test_each_other_service_runs_through_to_the_account_system(
    aiohttp_client: Any,
    tmp_path: Path,
    db_url: str,
    kind: str,
    identity: dict[str, Any],
    service: dict[str, Any],
    changed: dict[str, Any] | None,
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url)
    inv = await holder(client, "13900139008", kind)
    view = await verified(inv, identity, **service)
    assert [a["precheck"]["ok"] for a in view["service"]["accounts"]] == [True]
    app_id = view["id"]
    await approve(client, app_id)
    if client.app[RUNTIME].config.services.offer.needs_callback(kind):  # type: ignore[arg-type]
        h = await callback_staff(client)
        got = await client.post(
            f"/api/v1/callbacks/{app_id}", json={"outcome": "confirmed"}, headers=h
        )
        assert got.status == 200, await got.text()
    assert await state_of(client, app_id) == "completed"
    rt = client.app[RUNTIME]
    async with rt.db.begin() as s:
        row = await s.scalar(select(ServiceOutcome).where(ServiceOutcome.application_id == app_id))
        assert row is not None and row.status == "done" and row.business_type == kind
        details = rt.protector.decrypt_json(row.details_enc, context="applications.service")
    if changed is not None:
        assert details["changes"] == changed
    if kind == "query":
        assert details["info"]["number"] == "0100000201"


async def test_the_precheck_is_asked_again_as_the_holder_joins_the_queue(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url)
    inv = await holder(client, "13900139005", "cancel")
    view = await verified(inv, ZHOU_BA, account_number="181000000101", accounts=["A100000101"])
    assert view["service"]["accounts"][0]["precheck"]["error_code"] == "holdings_remain"
    first_checked = view["service"]["checked_at"]
    # The holder sells the shares before joining the queue.
    records = client.app[RUNTIME].accounts._records
    sold = dataclasses.replace(records["A100000101"].account, holdings=False)
    records["A100000101"] = dataclasses.replace(records["A100000101"], account=sold)
    resp = await inv.post("/application/queue")
    assert resp.status == 200, await resp.text()
    view = await inv.app()
    assert view["service"]["accounts"][0]["precheck"] == {"ok": True, "error_code": None}
    assert view["service"]["checked_at"] > first_checked
    assert len(await audits(client, "intake.precheck_changed")) == 1
    # Asked again while the account system is down: the last answer stays, with its time.
    resp = await client.delete(f"{API}/application/queue", headers={"X-CSRF-Token": inv.csrf})
    assert resp.status == 200, await resp.text()
    client.app[RUNTIME].accounts._failure_rate = 1.0
    assert (await inv.post("/application/queue")).status == 200
    assert (await inv.app())["service"]["accounts"][0]["precheck"]["ok"] is True
    assert len(await audits(client, "intake.precheck_changed")) == 1
