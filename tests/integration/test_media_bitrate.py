"""Bitrate on the passthrough relay (issue 9): frames forwarded unchanged cannot be
re-encoded to fit the receiving party, so the sending party is asked (REMB) to send no
more than our cap and no more than the receiving browser says it can take."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.http.keys import RUNTIME
from server.media import hooks
from tests.call_flow import FAST_PAIRING, end_call, paired
from tests.helpers import wait_for
from tests.media_client import Party
from tests.server_config import make_config

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def _client(aiohttp_client: Any, tmp_path: Path, db_url: str, kbps: int) -> Any:
    cfg = make_config(
        tmp_path,
        db_url,
        pairing=FAST_PAIRING,
        identity={"sandbox_latency_ms": 0},
        media={"rejoin_grace_seconds": 3, "max_video_kbps": kbps},
    )
    return aiohttp_client(create_app(cfg))


async def _call(mclient: TestClient) -> tuple[str, Party, Party, list[Any]]:  # type: ignore[type-arg]
    sid, w_token, i_token, extra = await paired(mclient)
    witness, investor = Party(mclient, sid, w_token), Party(mclient, sid, i_token)
    await witness.join()
    await investor.join()
    await asyncio.gather(witness.start_media(), investor.start_media())
    await wait_for(lambda: witness.received["video"] >= 5 and investor.received["video"] >= 5)
    return sid, witness, investor, extra


def _rembs_seen(party: Party) -> list[int]:
    """What the server asks this party's video sender to stay under, as it arrives."""
    seen: list[int] = []
    assert party.video_transceiver is not None
    hooks.on_remb(party.video_transceiver.sender, seen.append)
    return seen


async def test_cap_and_the_receiving_browsers_limit_reach_the_sending_one(
    aiohttp_client: Any, tmp_path: Path, db_url: str
) -> None:
    mclient = await _client(aiohttp_client, tmp_path, db_url, kbps=2000)
    rt = mclient.app[RUNTIME]
    assert rt.media.settings.max_video_bitrate == 2_000_000  # kbit/s from the config
    sid, witness, investor, extra = await _call(mclient)
    media = rt.media.sessions[sid]
    seen = _rembs_seen(witness)
    await wait_for(lambda: len(seen) >= 3, within=15)
    # The server's own estimate of the witness's (loopback) link; the synthetic picture
    # is simple, so it is low, and below the configured cap.
    natural = max(seen)
    assert natural < 2_000_000, seen

    # Our cap: the witness is asked to send no more than it.
    media.settings = replace(media.settings, max_video_bitrate=natural // 2)
    count = len(seen)
    await wait_for(lambda: len(seen) >= count + 3, within=15)
    assert all(bps <= natural // 2 for bps in seen[count + 1 :]), (natural, seen[count:])

    # No cap, but the investor's browser now reports it can take only a third of that (a
    # weak phone link): its REMB reaches the server's sender, and the witness, whose
    # frames are forwarded unchanged, is asked to send no more.
    media.settings = replace(media.settings, max_video_bitrate=None)
    assert investor.video_transceiver is not None
    hooks.limit_remb(investor.video_transceiver.receiver, lambda: natural // 3)
    await wait_for(lambda: media.legs["investor"].downstream_bitrate == natural // 3, within=15)
    count = len(seen)
    await wait_for(lambda: len(seen) >= count + 3, within=15)
    assert all(bps <= natural // 3 for bps in seen[count + 1 :]), (natural, seen[count:])
    await end_call(mclient, sid, [witness, investor], extra)
