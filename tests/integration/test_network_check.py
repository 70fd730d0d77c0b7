"""The investor's pre-call check (issue 16) through the API, with an aiortc client: the
node measures and seals, the check is stored with its audit entry, the queue needs it;
bad input, the rate limit, the per-node cap and a client that never connects."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.app import create_app
from server.http.keys import RUNTIME
from server.store.models import AuditEntry, NetworkCheck
from tests.intake_flow import ZHANG_SAN, sign_in, verified_investor
from tests.network_check_flow import (
    ProbeClient,
    network_check_info,
    post_check,
    run_probe,
)
from tests.server_config import make_config

FAST = {
    "require_network_check": True,
    "network_check_seconds": 2.0,
    "network_check_connect_seconds": 3.0,
}


async def _client(aiohttp_client: Any, tmp_path: Path, db_url: str, **intake: Any) -> TestClient:  # type: ignore[type-arg]
    cfg = make_config(
        tmp_path, db_url, identity={"sandbox_latency_ms": 0}, intake={**FAST, **intake}
    )
    return await aiohttp_client(create_app(cfg))  # type: ignore[no-any-return]


@pytest.fixture
async def nclient(aiohttp_client: Any, tmp_path: Path, db_url: str) -> TestClient:  # type: ignore[type-arg]
    return await _client(aiohttp_client, tmp_path, db_url)


def _error(body: dict[str, Any], code: str) -> None:
    assert body["error"]["code"] == code, body
    assert body["error"]["message"] and body["error"]["message_zh"] != body["error"]["message"]


@pytest.mark.serial  # bounds the probe's time
async def test_probe_measures_stores_and_opens_the_queue(nclient: Any) -> None:
    investor = await verified_investor(nclient, "13800138101", ZHANG_SAN)
    info = await network_check_info(investor)
    assert info["check"] is None and info["required"] is True
    assert isinstance(info["ice_servers"], list)

    resp = await investor.post("/application/queue")
    assert resp.status == 409
    _error(await resp.json(), "network_check_required")

    began = time.monotonic()
    result = await run_probe(investor)
    took = time.monotonic() - began
    shown = result["measurement"]
    print(f"probe took {took:.2f}s; measured {shown}")
    assert shown["connected"] is True
    assert shown["rtt_ms"] is not None and shown["rtt_ms"] < 200  # loopback
    assert shown["upstream_kbps"] and shown["upstream_kbps"] > 0
    assert took < 2.0 + 3.0 + 2.0  # measuring + connecting + the flush, bounded

    resp = await post_check(
        investor, result["token"], candidate_type="host", protocol="udp", outgoing_kbps=900
    )
    assert resp.status == 201, await resp.text()
    check = (await resp.json())["check"]
    assert check["path"] == "direct" and check["protocol"] == "udp"
    assert check["verdict"] in ("ok", "weak")  # an aiortc sender starts slowly
    assert check["may_join"] is True
    assert (await network_check_info(investor))["check"]["id"] == check["id"]

    async with nclient.app[RUNTIME].db.begin() as tx:
        row = (await tx.scalars(select(NetworkCheck))).one()
        audit = (
            await tx.scalars(
                select(AuditEntry).where(AuditEntry.action == "intake.network_checked")
            )
        ).one()
    assert row.rtt_ms == shown["rtt_ms"] and row.upstream_kbps == shown["upstream_kbps"]
    assert row.details is not None and row.details["client"]["outgoing_kbps"] == 900
    assert audit.details["check_id"] == row.id

    assert (await investor.post("/application/queue")).status == 200
    probes = nclient.app[RUNTIME].network_checks.probes
    for _ in range(30):  # closed just after the result's flush
        if not probes.running:
            break
        await asyncio.sleep(0.1)
    assert not probes.running


async def test_a_failed_check_keeps_the_investor_out_of_the_queue(nclient: Any) -> None:
    investor = await verified_investor(nclient, "13800138102", ZHANG_SAN)
    resp = await post_check(investor, None, error="ice_failed")
    assert resp.status == 201
    check = (await resp.json())["check"]
    assert check["verdict"] == "failed" and check["path"] == "none"
    assert [r["code"] for r in check["reasons"]] == ["no_connection"]
    assert all(r["zh"] and r["en"] for r in check["reasons"])
    resp = await investor.post("/application/queue")
    assert resp.status == 409
    _error(await resp.json(), "network_check_failed")


async def test_relayed_path_and_a_camera_failure_are_stored_as_seen(nclient: Any) -> None:
    investor = await verified_investor(nclient, "13800138103", ZHANG_SAN)
    result = await run_probe(investor)
    resp = await investor.post(
        "/application/network-check",
        {
            "token": result["token"],
            "camera_ok": False,
            "microphone_ok": True,
            "client": {"candidate_type": "relay", "protocol": "udp", "relay_protocol": "tls"},
        },
    )
    check = (await resp.json())["check"]
    assert check["path"] == "relay" and check["protocol"] == "tls"
    assert check["verdict"] == "failed" and check["reasons"][0]["code"] == "camera"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"token": "x.y", "camera_ok": True, "microphone_ok": True}, "network_check_token_invalid"),
        ({"token": None, "camera_ok": "yes", "microphone_ok": True}, None),
        ({"camera_ok": True, "microphone_ok": True, "client": {"candidate_type": "lan"}}, None),
        ({"camera_ok": True, "microphone_ok": True, "client": {"rtt_ms": -1}}, None),
        ({"camera_ok": True}, None),
    ],
)
async def test_bad_reports_are_refused(
    nclient: Any, body: dict[str, Any], code: str | None
) -> None:
    investor = await verified_investor(nclient, "13800138104", ZHANG_SAN)
    resp = await investor.post("/application/network-check", body)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["message_zh"] and error["message"]
    if code:
        assert error["code"] == code


async def test_a_token_from_another_application_is_refused(nclient: Any) -> None:
    first = await verified_investor(nclient, "13800138105", ZHANG_SAN)
    result = await run_probe(first)
    body, mac = result["token"].split(".")
    resp = await post_check(first, f"{body}.{mac[::-1]}")
    assert resp.status == 400
    _error(await resp.json(), "network_check_token_invalid")
    # The same client signs in as another investor (the cookie is replaced).
    second, _ = await sign_in(nclient, "13800138106")
    # The second is still a draft, but the token is refused first: it is not theirs.
    resp = await post_check(second, result["token"])
    assert resp.status == 400
    _error(await resp.json(), "network_check_token_invalid")


async def test_bad_offer_is_refused_and_the_probe_is_only_before_queueing(nclient: Any) -> None:
    investor = await verified_investor(nclient, "13800138107", ZHANG_SAN)
    resp = await investor.post("/application/network-check/probe", {"sdp": "v=0 not an offer"})
    assert resp.status == 400
    _error(await resp.json(), "network_check_offer_invalid")
    resp = await investor.post("/application/network-check/probe", {})
    assert resp.status == 400
    draft, _ = await sign_in(nclient, "13800138108")
    resp = await draft.post("/application/network-check/probe", {"sdp": "v=0 " * 10})
    assert resp.status == 409
    _error(await resp.json(), "network_check_not_now")


async def test_probes_are_rate_limited_per_application(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(aiohttp_client, tmp_path, db_url, network_checks_per_hour=2)
    investor = await verified_investor(client, "13800138109", ZHANG_SAN)
    for _ in range(2):
        resp = await investor.post("/application/network-check/probe", {"sdp": "v=0 " * 10})
        assert resp.status == 400  # counted all the same
    resp = await investor.post("/application/network-check/probe", {"sdp": "v=0 " * 10})
    assert resp.status == 429
    body = await resp.json()
    _error(body, "rate_limited")
    assert body["error"]["details"]["retry_after"] > 0


@pytest.mark.serial  # bounds the time to close the probe
async def test_a_client_that_never_connects_is_closed_and_the_node_cap_holds(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    client = await _client(
        aiohttp_client,
        tmp_path,
        db_url,
        network_check_connect_seconds=1.0,
        network_check_max_concurrent=1,
    )
    probes = client.app[RUNTIME].network_checks.probes
    investor = await verified_investor(client, "13800138110", ZHANG_SAN)
    silent = ProbeClient(investor)
    try:
        resp = await silent.start()  # the answer is never applied: no connection
        assert resp.status == 201
        assert len(probes.running) == 1
        second = ProbeClient(investor)
        resp = await second.start()
        await second.close()
        assert resp.status == 503
        _error(await resp.json(), "network_check_busy")
        began = time.monotonic()
        for _ in range(50):
            if not probes.running:
                break
            await asyncio.sleep(0.1)
        assert not probes.running, "the probe outlived its connect timeout"
        assert time.monotonic() - began < 2.5
        assert not silent.result.done()  # nothing to report without a connection
    finally:
        await silent.close()
