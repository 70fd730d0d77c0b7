"""Callback and account opening in both orders A8 allows (A8, A9, A17.6, A26)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.app import create_app
from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import Account, Application, AuditEntry
from tests.helpers import add_staff, csrf_from, login
from tests.intake_flow import ZHANG_SAN, verified_investor
from tests.server_config import make_config


async def _client(aiohttp_client: Any, tmp_path: Path, db_url: str, order: str) -> TestClient:  # type: ignore[type-arg]
    cfg = make_config(
        tmp_path,
        db_url,
        identity={"sandbox_latency_ms": 0},
        callback={"order": order, "max_attempts": 3},
        accounts={"sandbox_latency_ms": 0},
    )
    return await aiohttp_client(create_app(cfg))


async def approved_application(client: Any) -> str:
    investor = await verified_investor(client, "13800138000", ZHANG_SAN)
    app_id = str((await investor.app())["id"])
    async with client.app[RUNTIME].db.begin() as s:
        app = await s.get(Application, app_id)
        assert app is not None
        app.state = "approved"  # the review stage is tested in test_review_api.py
    return app_id


async def callback_staff(client: Any) -> dict[str, str]:
    await add_staff(client, "cb.wu", {Role.CALLBACK})
    client.session.cookie_jar.clear()
    await login(client, "cb.wu")
    return {"X-CSRF-Token": csrf_from(await (await client.get("/staff/")).text())}


async def state_of(client: Any, app_id: str) -> str:
    async with client.app[RUNTIME].db.begin() as s:
        app = await s.get(Application, app_id)
        assert app is not None
        return app.state


@pytest.mark.parametrize("order", ["callback_first"])
async def test_callback_first_then_the_account_opens_active(
    aiohttp_client: Any, tmp_path: Path, db_url: str, order: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url, order)
    app_id = await approved_application(client)
    h = await callback_staff(client)
    work = await (await client.get("/api/v1/callbacks")).json()
    assert work["order"] == "callback_first"
    assert [i["application_id"] for i in work["items"]] == [app_id]
    assert work["items"][0]["id_number_masked"] == "110105********002X"
    # Unreachable twice: still waiting, attempts counted.
    for n in (1, 2):
        got = await (
            await client.post(
                f"/api/v1/callbacks/{app_id}", json={"outcome": "unreachable"}, headers=h
            )
        ).json()
        assert got["attempts"] == n and got["state"] == "approved"
    bad = await client.post(f"/api/v1/callbacks/{app_id}", json={"outcome": "maybe"}, headers=h)
    assert bad.status == 400
    got = await (await client.post(
        f"/api/v1/callbacks/{app_id}", json={"outcome": "confirmed", "notes": "本人确认"}, headers=h
    )).json()  # fmt: skip
    assert got["state"] == "active"
    async with client.app[RUNTIME].db.begin() as s:
        account = await s.scalar(select(Account).where(Account.application_id == app_id))
        actions = (await s.scalars(select(AuditEntry.action))).all()
    assert account is not None and account.status == "active"
    assert account.opening_method == "two_way_video_witnessing"  # A26
    assert re.fullmatch(r"18\d{10}", account.unified_account_number)
    assert re.fullmatch(r"A\d{9}", account.sub_accounts["sh"])
    assert re.fullmatch(r"0\d{9}", account.sub_accounts["sz"])
    assert "callback.attempted" in actions and "application.open_account" in actions
    again = await client.post(
        f"/api/v1/callbacks/{app_id}", json={"outcome": "confirmed"}, headers=h
    )
    assert again.status == 409


async def test_open_first_keeps_the_account_blocked_until_the_callback(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url, "open_first")
    rt = client.app[RUNTIME]
    app_id = await approved_application(client)
    await rt.aftercare.after_approval(app_id, actor="test")  # what an approval does
    assert await state_of(client, app_id) == "account_opened"
    async with rt.db.begin() as s:
        account = await s.scalar(select(Account).where(Account.application_id == app_id))
    assert account is not None and account.status == "blocked"  # A17.6
    h = await callback_staff(client)
    work = await (await client.get("/api/v1/callbacks")).json()
    assert [i["application_id"] for i in work["items"]] == [app_id]
    got = await (
        await client.post(f"/api/v1/callbacks/{app_id}", json={"outcome": "confirmed"}, headers=h)
    ).json()
    assert got["state"] == "active"
    async with rt.db.begin() as s:
        account = await s.scalar(select(Account).where(Account.application_id == app_id))
    assert account is not None and account.status == "active"


async def test_unreachable_too_often_or_denied_ends_it(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url, "callback_first")
    app_id = await approved_application(client)
    h = await callback_staff(client)
    for _ in range(3):
        got = await (
            await client.post(
                f"/api/v1/callbacks/{app_id}", json={"outcome": "unreachable"}, headers=h
            )
        ).json()
    assert got["state"] == "callback_failed" and got["attempts"] == 3
    async with client.app[RUNTIME].db.begin() as s:
        assert await s.scalar(select(Account)) is None  # nothing opened
    assert (await client.get("/api/v1/callbacks")).status == 200
    assert (await (await client.get("/api/v1/callbacks")).json())["items"] == []


async def test_only_callback_staff_reach_the_worklist(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url, "callback_first")
    await add_staff(client, "w.zhang", {Role.WITNESS})
    await login(client, "w.zhang")
    assert (await client.get("/api/v1/callbacks")).status == 403


async def test_investor_is_told_the_numbers_and_downloads_a_confirmation(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    """A9: SMS (and email) with the numbers once the account is usable; a PDF with the
    Chinese font embedded that contains the unified account number."""
    import io

    from pypdf import PdfReader

    from server.store.models import Notification

    client = await _client(aiohttp_client, tmp_path, db_url, "callback_first")
    rt = client.app[RUNTIME]
    investor = await verified_investor(client, "13800138000", ZHANG_SAN)
    app_id = str((await investor.app())["id"])
    assert (await investor.client.get("/api/v1/investor/application/account")).status == 404
    assert (
        await investor.client.get("/api/v1/investor/application/confirmation.pdf")
    ).status == 404
    async with rt.db.begin() as s:
        app = await s.get(Application, app_id)
        assert app is not None
        app.state = "approved"
    # Staff sign in beside the investor (separate cookies in this one client).
    await add_staff(client, "cb.wu", {Role.CALLBACK})
    await login(client, "cb.wu")
    h = {"X-CSRF-Token": csrf_from(await (await client.get("/staff/")).text())}
    await client.post(f"/api/v1/callbacks/{app_id}", json={"outcome": "confirmed"}, headers=h)
    async with rt.db.begin() as s:
        account = await s.scalar(select(Account).where(Account.application_id == app_id))
        notes = (
            await s.scalars(select(Notification).where(Notification.application_id == app_id))
        ).all()
    assert account is not None
    sms = rt.sms.last_to("13800138000")  # type: ignore[attr-defined]
    assert sms is not None and account.unified_account_number in sms.text
    assert {(n.channel, n.status) for n in notes} >= {("sms", "sent")}
    assert all("13800138000" not in n.recipient_masked for n in notes)
    # Admins read the outbox (masked recipients); others may not.
    assert (await client.get("/staff/admin/notifications")).status == 403
    await add_staff(client, "admin.he", {Role.ADMIN})
    client.session.cookie_jar.clear(lambda c: c.key == "witness_staff")
    await login(client, "admin.he")
    page = await (await client.get("/staff/admin/notifications")).text()
    assert account.unified_account_number in page and "138****8000" in page

    got = await (await investor.client.get("/api/v1/investor/application/account")).json()
    assert got["unified_account_number"] == account.unified_account_number
    pdf = await investor.client.get("/api/v1/investor/application/confirmation.pdf")
    assert pdf.status == 200 and pdf.headers["Content-Type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(await pdf.read()))
    text = "".join(page.extract_text() for page in reader.pages)
    assert account.unified_account_number in text and "双向视频见证" in text
    fonts = reader.pages[0]["/Resources"]["/Font"].get_object()
    embedded = [
        name
        for name, ref in fonts.items()
        if "/FontDescriptor" in ref.get_object()
        and "/FontFile2" in ref.get_object()["/FontDescriptor"].get_object()
    ]
    assert embedded  # the Chinese TrueType glyphs are in the file, not a CID reference


async def test_worklist_page_records_a_call(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url, "callback_first")
    app_id = await approved_application(client)
    await callback_staff(client)
    page = await (await client.get("/staff/callbacks")).text()
    assert app_id in page and "110105********002X" in page and "11010519491231002X" not in page
    token = csrf_from(page)
    import aiohttp

    junk = aiohttp.FormData()
    junk.add_field("csrf_token", token)
    junk.add_field("outcome", "unreachable")
    junk.add_field("audio", b"not audio", filename="x.mp3", content_type="audio/mpeg")
    resp = await client.post(f"/staff/callbacks/{app_id}", data=junk, allow_redirects=False)
    assert resp.status == 400  # refused, nothing recorded
    wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40)
    form = aiohttp.FormData()
    form.add_field("csrf_token", token)
    form.add_field("outcome", "confirmed")
    form.add_field("notes", "本人确认")
    form.add_field("audio", wav, filename="call.wav", content_type="audio/wav")
    resp = await client.post(f"/staff/callbacks/{app_id}", data=form, allow_redirects=False)
    assert resp.status == 303 and "done=active" in resp.headers["Location"]
    assert await state_of(client, app_id) == "active"
    import hashlib

    from server.store.models import Callback

    async with client.app[RUNTIME].db.begin() as s:
        calls = (await s.scalars(select(Callback).where(Callback.application_id == app_id))).all()
    assert len(calls) == 1 and calls[0].audio_sha256 == hashlib.sha256(wav).hexdigest()
    stored = client.app[RUNTIME].config.recordings_path / str(calls[0].audio_path)
    assert stored.read_bytes() == wav
