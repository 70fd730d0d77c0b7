"""Real calls through the network lab (issue 16): investor's Chromium behind NAT at
home, witness's Chromium elsewhere, server and coturn on their own hosts. Each case goes
through intake, the queue, the witness desk and recording, and asserts on what the
browsers measured (getStats) and on the recordings (PyAV decodes them end to end)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from playwright.async_api import Browser

from tests.netlab.calls import (
    LabServer,
    check_recordings,
    end_call,
    lab_context,
    lab_data,
    place_call,
    received_numbers,
    save_numbers,
    selected_pair,
)
from tests.netlab.lab import Lab

pytestmark = pytest.mark.netlab
TALK_SECONDS = 8
RECORDING_KEYS = ("participant", "segment", "duration_ms", "decoded", "damaged_ms", "frames_lost")


async def _talk_and_measure(
    case: str, server: LabServer, browsers: tuple[Browser, Browser], seconds: float
) -> dict[str, Any]:
    home, wit_browser = browsers
    inv_ctx = await lab_context(home, investor=True)
    wit_ctx = await lab_context(wit_browser, investor=False)
    inv, wit = await inv_ctx.new_page(), await wit_ctx.new_page()
    call = await place_call(server, inv, wit)
    await asyncio.sleep(seconds)
    inv_data, wit_data = await lab_data(inv), await lab_data(wit)
    await end_call(call)
    rows = check_recordings(server)
    numbers = {
        "investor_receives": received_numbers(inv_data["samples"], start=call.accepted_at),
        "witness_receives": received_numbers(wit_data["samples"], start=call.accepted_at),
        "investor_pair": selected_pair(inv_data["samples"]),
        "witness_pair": selected_pair(wit_data["samples"]),
        "recordings": [
            {
                k: r[k]
                for k in (
                    "participant",
                    "segment",
                    "duration_ms",
                    "decoded",
                    "damaged_ms",
                    "frames_lost",
                )
            }
            for r in rows
        ],
        "investor_ice_errors": inv_data["iceErrors"][:5],
    }
    save_numbers(case, numbers)
    await inv_ctx.close()
    await wit_ctx.close()
    return numbers


async def test_behind_nat_with_udp_open_connects(
    clean_lab: Lab, server: LabServer, browsers: tuple[Browser, Browser]
) -> None:
    started = time.monotonic()
    n = await _talk_and_measure("nat", server, browsers, TALK_SECONDS)
    pair = n["investor_pair"]
    assert pair is not None
    # Direct over UDP: the investor's host (or server-reflexive) candidate to the
    # server's host address, through the NAT; no relay needed.
    assert pair["local"]["protocol"] == "udp", pair
    assert pair["local"]["candidateType"] in ("host", "srflx", "prflx"), pair
    assert pair["remote"]["address"] == clean_lab.addr["srv"], pair
    for side in ("investor_receives", "witness_receives"):
        assert n[side]["fps"] >= 12, (side, n[side])
    assert time.monotonic() - started < 120


@pytest.mark.parametrize(("relay", "tls_only"), [("tcp", False), ("tls", True)])
async def test_udp_blocked_connects_through_turn_relay(
    clean_lab: Lab,
    server: LabServer,
    browsers: tuple[Browser, Browser],
    relay: str,
    tls_only: bool,
) -> None:
    # A strict network: no UDP at all from the investor's home; for TLS also no TCP 3478,
    # so only TURN over TLS on 443 is left.
    clean_lab.block_udp(tls_only=tls_only)
    n = await _talk_and_measure(f"turn-{relay}", server, browsers, TALK_SECONDS)
    pair = n["investor_pair"]
    assert pair is not None
    assert pair["local"]["candidateType"] == "relay", pair
    assert pair["local"].get("relayProtocol") == relay, pair
    for side in ("investor_receives", "witness_receives"):
        assert n[side]["fps"] >= 12, (side, n[side])
