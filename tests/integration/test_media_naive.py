"""The naive pipeline (aiortc's decode → re-encode relay + MediaRecorder) that the load
benchmark measures as its baseline (issue 9): it must really relay and record, or the
benchmark's ratio would compare against nothing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.http.keys import RUNTIME
from server.media.naive import NaiveSession, count_frames
from tests.call_flow import FAST_PAIRING, paired
from tests.helpers import wait_for
from tests.media_client import Party
from tests.server_config import make_config


@pytest.fixture
async def naive_client(aiohttp_client: Any, tmp_path: Path, sqlite_template: Path) -> TestClient:  # type: ignore[type-arg]
    db = tmp_path / "test.db"
    shutil.copyfile(sqlite_template, db)  # one database kind is enough for a baseline
    cfg = make_config(
        tmp_path,
        f"sqlite+aiosqlite:///{db}",
        pairing=FAST_PAIRING,
        identity={"sandbox_latency_ms": 0},
        media={"pipeline": "naive", "rejoin_grace_seconds": 3},
    )
    return await aiohttp_client(create_app(cfg))


async def test_naive_pipeline_relays_decoded_video_and_records_mp4(naive_client: Any) -> None:
    rt = naive_client.app[RUNTIME]
    sid, w_token, i_token, extra = await paired(naive_client)
    witness, investor = Party(naive_client, sid, w_token), Party(naive_client, sid, i_token)
    try:
        await witness.join()
        await investor.join()
        await witness.start_media()
        await investor.start_media()
        assert isinstance(rt.media.sessions[sid], NaiveSession)
        # Decoded frames arrive on both sides (the clients' tracks decode what they get).
        await wait_for(
            lambda: witness.received["video"] >= 20 and investor.received["video"] >= 20
            and witness.received["audio"] >= 20 and investor.received["audio"] >= 20,
            within=30,
        )  # fmt: skip
    finally:
        await witness.close()
        await investor.close()
        for item in extra:
            if hasattr(item, "cancel"):
                item.cancel()
            else:
                await item.close()
    await rt.media.end(sid, "test_over")
    files = sorted(rt.config.recordings_path.rglob("naive-*.mp4"))
    assert [f.name for f in files] == ["naive-investor-00.mp4", "naive-witness-00.mp4"]
    for f in files:
        video, audio = count_frames(str(f))
        assert video >= 10 and audio >= 10, (f.name, video, audio)
