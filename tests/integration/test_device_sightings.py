"""The X-Device-Id header (A23 shared_device): sign-in and submit record a device sighting
of its keyed hash; three applications behind one device raise shared_device, different
devices do not; a malformed id is ignored, never an error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.app import create_app
from server.http.keys import RUNTIME
from server.store.risk_models import Alert, ApplicationSighting
from tests.intake_flow import API, ZHANG_SAN, Investor, complete_intake, skip_reading_time
from tests.server_config import make_config

PHONES = ("13800138001", "13800138002", "13800138003")


async def _client(aiohttp_client: Any, tmp_path: Path, db_url: str) -> TestClient:  # type: ignore[type-arg]
    cfg = make_config(
        tmp_path,
        db_url,
        identity={"sandbox_latency_ms": 0},
        accounts={"sandbox_latency_ms": 0},
        risk={"sweep_seconds": 3600.0},
    )
    client: TestClient = await aiohttp_client(create_app(cfg))  # type: ignore[type-arg]
    return client


async def _sign_in(client: Any, phone: str, device: str | None) -> tuple[Investor, str]:
    headers = {"X-Device-Id": device} if device is not None else {}
    sent = await client.post(f"{API}/otp", json={"phone": phone})
    assert sent.status == 202, await sent.text()
    code = (await sent.json())["sandbox_code"]
    resp = await client.post(f"{API}/session", json={"phone": phone, "code": code}, headers=headers)
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    return Investor(client, body["csrf_token"]), str(body["application"]["id"])


async def _submit(investor: Investor, device: str) -> None:
    await complete_intake(investor, ZHANG_SAN)
    resp = await investor.client.post(
        f"{API}/application/submit",
        json={},
        headers={"X-CSRF-Token": investor.csrf, "X-Device-Id": device},
    )
    assert resp.status == 200, await resp.text()


async def _device_sightings(rt: Any) -> list[ApplicationSighting]:
    async with rt.db.begin() as tx:
        query = select(ApplicationSighting).where(ApplicationSighting.kind == "device")
        return list((await tx.scalars(query)).all())


async def _shared_device(rt: Any) -> list[Alert]:
    async with rt.db.begin() as tx:
        return list((await tx.scalars(select(Alert).where(Alert.rule_id == "shared_device"))).all())


async def test_three_applications_behind_one_device_raise_shared_device(
    aiohttp_client: Any, tmp_path: Path, db_url: str, caplog: Any
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url)
    rt = client.app[RUNTIME]
    skip_reading_time(client.app)
    device = "5b0c1f8e-2d4a-4c6b-9e7f-0a1b2c3d4e5f"
    ids = []
    for phone in PHONES[:2]:
        _, app_id = await _sign_in(client, phone, device)
        ids.append(app_id)
    # Two applications behind the device: below min_applications (3), nothing yet.
    assert [
        a for a in await rt.risk.after_identity_check(ids[0]) if a.rule_id == "shared_device"
    ] == []
    investor, app_id = await _sign_in(client, PHONES[2], device)
    ids.append(app_id)
    # The third one submits from the same device: its identity-check hook raises it.
    await _submit(investor, device)

    sightings = await _device_sightings(rt)
    expected = rt.protector.lookup_hash(device, kind="device")
    assert {s.application_id for s in sightings} == set(ids)
    assert {s.key_hash for s in sightings} == {expected}  # the keyed hash, never the id
    assert len(sightings) == 3  # sign-in and submit of one application: one sighting
    (alert,) = await _shared_device(rt)
    assert alert.hold and alert.severity == "high"
    assert sorted(alert.details["application_ids"]) == sorted(ids)
    assert device not in caplog.text


async def test_different_devices_or_a_malformed_id_raise_nothing(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url)
    rt = client.app[RUNTIME]
    skip_reading_time(client.app)
    ids = []
    for n, phone in enumerate(PHONES[:2]):
        _, app_id = await _sign_in(client, phone, f"device-{n:04d}-aaaa")
        ids.append(app_id)
    investor, app_id = await _sign_in(client, PHONES[2], "device-0002-aaaa")
    ids.append(app_id)
    await _submit(investor, "device-0002-aaaa")
    assert len({s.key_hash for s in await _device_sightings(rt)}) == 3
    for app in ids:
        await rt.risk.after_identity_check(app)
    assert await _shared_device(rt) == []

    # Malformed ids (too short, bad characters, too long) are ignored, not refused.
    before = len(await _device_sightings(rt))
    bad = ("short", "has space in it", "x" * 65, "semi;colon-123")
    for n, device in enumerate(bad):
        await _sign_in(client, f"1380013801{n}", device)
    assert len(await _device_sightings(rt)) == before
