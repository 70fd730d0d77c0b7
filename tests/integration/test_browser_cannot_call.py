"""A browser without WebRTC (issue 17): the page stores a check saying so; the server
refuses the join with what to do, in both languages, even where no check is required."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from server.app import create_app
from tests.intake_flow import ZHANG_SAN, verified_investor
from tests.server_config import make_config


@pytest.mark.parametrize("required", [True, False])
async def test_no_webrtc_is_refused_with_what_to_do(
    aiohttp_client: Any, tmp_path: Path, db_url: str, required: bool
) -> None:
    cfg = make_config(
        tmp_path,
        db_url,
        identity={"sandbox_latency_ms": 0},
        intake={"require_network_check": required},
    )
    client = await aiohttp_client(create_app(cfg))
    investor = await verified_investor(client, "13800138111", ZHANG_SAN)
    resp = await investor.post(
        "/application/network-check",
        {
            "token": None,
            "camera_ok": False,
            "microphone_ok": False,
            "client": {"error": "no_webrtc"},
        },
    )
    assert resp.status == 201
    check = (await resp.json())["check"]
    assert check["verdict"] == "failed" and not check["may_join"]
    assert [r["code"] for r in check["reasons"]] == ["no_webrtc"]
    assert "Chrome" in check["reasons"][0]["zh"] and "Chrome" in check["reasons"][0]["en"]
    resp = await investor.post("/application/queue")
    assert resp.status == 409
    error = (await resp.json())["error"]
    assert error["code"] == "browser_cannot_call"
    assert "无法进行视频通话" in error["message_zh"]
    assert "cannot make video calls" in error["message"]
