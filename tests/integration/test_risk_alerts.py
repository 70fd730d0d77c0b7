"""Risk alerts wired in (A23): hooks raise and persist alerts, dedup, holds, the alert
life cycle through the API, overdue escalation, the read API's token scope, the webhook.
The rules themselves are tested pure in tests/unit."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.app import create_app
from server.domain.errors import Conflict
from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.services import api_tokens
from server.services.intake.steps import ID_CONTEXT
from server.services.retrieval.queries import package_contents, session_detail
from server.store.models import Application, AuditEntry, Review, Staff, WitnessSession
from server.store.risk_models import Alert, AlertEvent, ApplicationSighting, WebhookDelivery
from tests.helpers import add_staff, csrf_from, login
from tests.intake_flow import ZHANG_SAN, verified_investor
from tests.server_config import make_config

SECRET = "a-webhook-secret-of-some-length"


async def _client(aiohttp_client: Any, tmp_path: Path, db_url: str, **risk: Any) -> TestClient:  # type: ignore[type-arg]
    cfg = make_config(
        tmp_path,
        db_url,
        identity={"sandbox_latency_ms": 0},
        accounts={"sandbox_latency_ms": 0},
        risk={"sweep_seconds": 3600.0, **risk},
    )
    return await aiohttp_client(create_app(cfg))


async def _application(rt: Any, *, phone_hash: str = "p" * 64, state: str = "submitted") -> str:
    async with rt.db.begin() as tx:
        app = Application(state=state, phone_hash=phone_hash, phone_enc=b"x")
        tx.add(app)
        await tx.flush()
        return app.id


async def _staff_id(rt: Any, username: str) -> int:
    async with rt.db.begin() as tx:
        staff_id = await tx.scalar(select(Staff.id).where(Staff.username == username))
    assert staff_id is not None
    return int(staff_id)


async def _alerts(rt: Any, rule: str | None = None) -> list[Alert]:
    async with rt.db.begin() as tx:
        query = select(Alert).order_by(Alert.created_at)
        if rule is not None:
            query = query.where(Alert.rule_id == rule)
        return list((await tx.scalars(query)).all())


async def _compliance(client: Any, username: str, roles: set[Role] | None = None) -> dict[str, str]:
    await add_staff(client, username, roles or {Role.COMPLIANCE})
    client.session.cookie_jar.clear()
    assert (await login(client, username)).status == 302
    return {"X-CSRF-Token": csrf_from(await (await client.get("/staff/")).text())}


async def test_sign_in_and_submit_record_sightings_and_the_hook_raises_shared_phone(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url)
    rt = client.app[RUNTIME]
    investor = await verified_investor(client, "13800138000", ZHANG_SAN)
    app_id = str((await investor.app())["id"])
    async with rt.db.begin() as tx:
        kinds = {
            r.kind
            for r in (
                await tx.scalars(
                    select(ApplicationSighting).where(ApplicationSighting.application_id == app_id)
                )
            ).all()
        }
        phone_hash = (await tx.get(Application, app_id)).phone_hash  # type: ignore[union-attr]
    assert kinds == {"phone", "ip"}
    # One application behind the phone: nothing.
    assert await _alerts(rt, "shared_phone") == []

    # A second application behind the same phone, seen at sign-in: the hook raises it.
    other = await _application(rt, phone_hash=phone_hash)
    await rt.risk.saw_phone(other)
    raised = await rt.risk.after_identity_check(other)
    assert [a.rule_id for a in raised if a.rule_id == "shared_phone"] == ["shared_phone"]
    (alert,) = await _alerts(rt, "shared_phone")
    assert alert.hold and alert.severity == "high" and alert.state == "open"
    assert sorted(alert.details["application_ids"]) == sorted([app_id, other])
    assert alert.due_at - alert.created_at == timedelta(hours=4)
    async with rt.db.begin() as tx:
        events = (await tx.scalars(select(AlertEvent).where(AlertEvent.alert_id == alert.id))).all()
        audit = await tx.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "alert.raised", AuditEntry.subject_id == alert.id
            )
        )
    assert [e.event for e in events] == ["raised"] and audit is not None

    # Evaluated again on the same facts: no duplicate.
    assert [
        a for a in await rt.risk.after_identity_check(app_id) if a.rule_id == "shared_phone"
    ] == []
    assert len(await _alerts(rt, "shared_phone")) == 1
    metrics = await (await client.get("/metrics")).text()
    assert 'witness_risk_alerts_raised_total{rule="shared_phone",severity="high"} 1.0' in metrics


async def test_verdict_hook_raises_short_session_and_not_for_a_long_one(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url)
    rt = client.app[RUNTIME]
    await add_staff(client, "wit.wang", {Role.WITNESS})
    witness = await _staff_id(rt, "wit.wang")
    now = datetime.now(UTC)
    ids = {}
    for name, seconds in (("short", 60), ("long", 600)):
        app_id = await _application(rt, state="witnessed")
        async with rt.db.begin() as tx:
            row = WitnessSession(
                application_id=app_id,
                witness_id=witness,
                state="ended",
                verdict="pass",
                started_at=now - timedelta(seconds=seconds),
                ended_at=now,
            )
            tx.add(row)
            await tx.flush()
            ids[name] = row.id
    assert rt.witnessing.on_verdict == rt.risk.after_verdict  # what conclude calls
    short = await rt.risk.after_verdict(ids["short"])
    long = await rt.risk.after_verdict(ids["long"])
    assert [a.subject_id for a in short if a.rule_id == "short_session"] == [ids["short"]]
    assert [a for a in long if a.rule_id == "short_session"] == []
    # The retrieval API and the evidence package show the session's alerts (A23).
    async with rt.db.begin() as tx:
        detail = await session_detail(tx, ids["short"], rt.protector)
        _, audit, _ = await package_contents(tx, ids["short"], rt.config.recordings_path)
    short_alert = next(a for a in detail["alerts"] if a["rule_id"] == "short_session")
    assert short_alert["rule_description_zh"] and short_alert["rule_description_en"]
    assert any(e["action"] == "alert.raised" for e in audit)
    async with rt.db.begin() as tx:
        long_detail = await session_detail(tx, ids["long"], rt.protector)
    assert "short_session" not in [a["rule_id"] for a in long_detail["alerts"]]


async def test_a_failing_hook_never_fails_the_flow(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url)
    rt = client.app[RUNTIME]

    async def broken(tx: Any, now: datetime) -> Any:
        raise RuntimeError("facts unavailable")

    assert await rt.risk._guard("verdict", lambda: rt.risk._evaluate(broken)) == []
    metrics = await (await client.get("/metrics")).text()
    assert 'witness_risk_hook_failures_total{hook="verdict"} 1.0' in metrics


async def _approved(rt: Any, reviewer: int) -> str:
    app_id = await _application(rt, state="approved")
    async with rt.db.begin() as tx:
        session = WitnessSession(application_id=app_id, witness_id=reviewer, state="ended")
        tx.add(session)
        await tx.flush()
        tx.add(
            Review(
                application_id=app_id,
                session_id=session.id,
                reviewer_id=reviewer,
                decision="approve",
                decided_at=datetime.now(UTC),
            )
        )
    return app_id


async def test_callback_hook_raises_on_denial_not_on_a_first_unreached_call(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url)
    rt = client.app[RUNTIME]
    await add_staff(client, "rev.li", {Role.REVIEWER})
    reviewer = await _staff_id(rt, "rev.li")
    await add_staff(client, "cb.wu", {Role.CALLBACK})
    client.session.cookie_jar.clear()
    await login(client, "cb.wu")
    headers = {"X-CSRF-Token": csrf_from(await (await client.get("/staff/")).text())}
    denied = await _approved(rt, reviewer)
    # Unreachable once of three allowed attempts: not yet a failed callback.
    unreached = await _approved(rt, reviewer)
    for app_id, outcome in ((denied, "denied"), (unreached, "unreachable")):
        resp = await client.post(
            f"/api/v1/callbacks/{app_id}", json={"outcome": outcome}, headers=headers
        )
        assert resp.status in (200, 201), await resp.text()
    alerts = await _alerts(rt, "callback_failed")
    assert [a.application_id for a in alerts] == [denied]


async def test_a_holding_alert_blocks_opening_until_resolved_and_the_life_cycle(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url)
    rt = client.app[RUNTIME]
    await add_staff(client, "rev.li", {Role.REVIEWER, Role.COMPLIANCE})
    reviewer = await _staff_id(rt, "rev.li")
    app_id = await _approved(rt, reviewer)
    async with rt.db.begin() as tx:
        app = await tx.get(Application, app_id)
        assert app is not None
        app.state = "callback_confirmed"
        app.investor_name, app.document_type = ZHANG_SAN["name"], ZHANG_SAN["document_type"]
        app.id_number_enc = rt.protector.encrypt(ZHANG_SAN["id_number"], context=ID_CONTEXT)
    other = await _application(rt, phone_hash="q" * 64)
    for a in (app_id, other):
        async with rt.db.begin() as tx:
            tx.add(ApplicationSighting(application_id=a, kind="phone", key_hash="q" * 64))
    (alert,) = [a for a in await rt.risk.after_identity_check(other) if a.hold]

    with pytest.raises(Conflict) as refused:
        await rt.aftercare.open_account(app_id, actor="test")
    assert refused.value.code == "risk_hold"

    # Four eyes: the reviewer of the case may not handle its alert.
    client.session.cookie_jar.clear()
    await login(client, "rev.li")
    own = {"X-CSRF-Token": csrf_from(await (await client.get("/staff/")).text())}
    url = f"/api/v1/compliance/alerts/{alert.id}/events"
    resp = await client.post(url, json={"event": "acknowledge"}, headers=own)
    assert resp.status == 403 and (await resp.json())["error"]["code"] == "own_case"

    headers = await _compliance(client, "comp.chen")
    officer = await _staff_id(rt, "comp.chen")
    inbox = await (await client.get("/api/v1/compliance/alerts?state=open")).json()
    assert alert.id in [i["id"] for i in inbox["items"]]
    body = await (await client.post(url, json={"event": "acknowledge"}, headers=headers)).json()
    assert body["state"] == "acknowledged" and body["owner_id"] == officer
    resp = await client.post(url, json={"event": "resolve"}, headers=headers)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "note_required"
    resp = await client.post(url, json={"event": "reopen", "note": "x"}, headers=headers)
    assert resp.status == 409
    resolved = await client.post(
        url, json={"event": "resolve", "note": "same family phone"}, headers=headers
    )
    body = await resolved.json()
    assert body["state"] == "resolved" and [e["event"] for e in body["events"]] == [
        "raised",
        "acknowledge",
        "resolve",
    ]
    # Event times carry their zone on both databases (SQLite hands back naive times).
    assert all(e["at"].endswith("+00:00") for e in body["events"])
    opened = await rt.aftercare.open_account(app_id, actor="test")  # the hold is gone
    assert opened["status"] == "active"

    # Resolved, the same facts do not raise it again; reopened, a fresh deadline.
    assert [a for a in await rt.risk.after_identity_check(other) if a.hold] == []
    body = await (
        await client.post(url, json={"event": "reopen", "note": "new facts"}, headers=headers)
    ).json()
    assert body["state"] == "open"
    assert datetime.fromisoformat(body["due_at"]) > datetime.now(UTC) + timedelta(hours=3)
    body = await (
        await client.post(url, json={"event": "escalate", "note": "to the head"}, headers=headers)
    ).json()
    assert body["state"] == "escalated"


async def test_overdue_alerts_are_escalated_by_the_clock(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url)
    rt = client.app[RUNTIME]
    for a in (await _application(rt), await _application(rt)):
        await rt.risk.saw_phone(a)
    await rt.risk.after_identity_check(a)
    (alert,) = await _alerts(rt, "shared_phone")
    assert await rt.risk.escalate_overdue() == []  # not due yet
    async with rt.db.begin() as tx:
        row = await tx.get(Alert, alert.id)
        assert row is not None
        row.due_at = datetime.now(UTC) - timedelta(minutes=1)
    view = await (await client.get("/metrics")).text()
    assert await rt.risk.escalate_overdue() == [alert.id]
    assert await rt.risk.escalate_overdue() == []  # not escalated twice
    async with rt.db.begin() as tx:
        row = await tx.get(Alert, alert.id)
        last = await tx.scalar(
            select(AlertEvent).where(AlertEvent.alert_id == alert.id).order_by(AlertEvent.id.desc())
        )
    assert row is not None and row.state == "escalated"
    assert last is not None and last.actor == "system" and "Overdue" in (last.note or "")
    view = await (await client.get("/metrics")).text()
    assert 'witness_risk_alert_escalations_total{by="clock"} 1.0' in view


async def test_the_read_api_needs_the_alerts_scope(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url)
    rt = client.app[RUNTIME]
    for a in (await _application(rt), await _application(rt)):
        await rt.risk.saw_phone(a)
    await rt.risk.after_identity_check(a)
    async with rt.db.begin() as tx:
        good = await api_tokens.create_token(
            tx, name="risk", scopes=[api_tokens.ALERTS_READ], days=None, actor="test"
        )
        other = await api_tokens.create_token(
            tx, name="archive", scopes=[api_tokens.RECORDINGS_READ], days=None, actor="test"
        )
    resp = await client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {good.token}"})
    body = await resp.json()
    assert resp.status == 200 and [i["rule_id"] for i in body["items"]] == ["shared_phone"]
    one = await client.get(
        f"/api/v1/alerts/{body['items'][0]['id']}",
        headers={"Authorization": f"Bearer {good.token}"},
    )
    assert one.status == 200 and (await one.json())["events"][0]["event"] == "raised"
    refused = await client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {other.token}"})
    assert refused.status == 403 and (await refused.json())["error"]["code"] == "scope_forbidden"
    # …nor may an alerts token read recordings.
    sessions = await client.get(
        "/api/v1/sessions", headers={"Authorization": f"Bearer {good.token}"}
    )
    assert sessions.status == 403
    assert (await client.get("/api/v1/alerts")).status == 401


async def test_the_webhook_retries_a_failing_receiver_with_a_stable_key(
    aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path, db_url: str
) -> None:
    seen: list[tuple[str, bool, dict[str, Any]]] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        valid = hmac.compare_digest(expected, request.headers["X-Witness-Signature"])
        seen.append((request.headers["Idempotency-Key"], valid, json.loads(body)))
        return web.Response(status=503 if len(seen) <= 2 else 200)

    receiver = web.Application()
    receiver.router.add_post("/hook", receive)
    server = await aiohttp_server(receiver)
    client = await _client(
        aiohttp_client,
        tmp_path,
        db_url,
        webhook_url=str(server.make_url("/hook")),
        webhook_secret=SECRET,
        webhook_backoff_seconds=0.05,
        webhook_backoff_max_seconds=0.2,
    )
    rt = client.app[RUNTIME]
    for a in (await _application(rt), await _application(rt)):
        await rt.risk.saw_phone(a)
    await rt.risk.after_identity_check(a)  # returns at once: the sender posts later
    (alert,) = await _alerts(rt, "shared_phone")
    for _ in range(100):
        async with rt.db.begin() as tx:
            delivery = await tx.scalar(
                select(WebhookDelivery).where(WebhookDelivery.alert_id == alert.id)
            )
        if delivery is not None and delivery.status == "delivered":
            break
        await asyncio.sleep(0.05)
    assert delivery is not None and delivery.status == "delivered" and delivery.attempts == 3
    assert [key for key, _, _ in seen] == [alert.id] * 3
    assert all(valid for _, valid, _ in seen)
    assert seen[-1][2]["alert"]["rule_id"] == "shared_phone"
    metrics = await (await client.get("/metrics")).text()
    assert 'witness_risk_webhook_deliveries_total{outcome="retry"} 2.0' in metrics
    assert 'witness_risk_webhook_deliveries_total{outcome="delivered"} 1.0' in metrics


async def test_a_webhook_receiver_that_is_down_never_blocks_raising(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(
        aiohttp_client,
        tmp_path,
        db_url,
        webhook_url="http://127.0.0.1:9/down",
        webhook_secret=SECRET,
        webhook_backoff_seconds=0.05,
        webhook_max_attempts=2,
    )
    rt = client.app[RUNTIME]
    for a in (await _application(rt), await _application(rt)):
        await rt.risk.saw_phone(a)
    assert await rt.risk.after_identity_check(a)
    for _ in range(100):  # the sender task retries in the background, then gives up
        async with rt.db.begin() as tx:
            delivery = await tx.scalar(select(WebhookDelivery))
        if delivery is not None and delivery.status == "failed":
            break
        await asyncio.sleep(0.05)
    assert delivery is not None and delivery.status == "failed" and delivery.last_error
