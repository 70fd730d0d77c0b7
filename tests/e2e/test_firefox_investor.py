"""Firefox as the investor's browser (issue 16): intake through the pages, the pre-call
check, the queue and a full witnessed call with the witness on Chromium, through the
media node, which records both. Firefox is Debian's firefox-esr over Marionette
(tests/firefox.py); its fake camera is its own pattern."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext
from sqlalchemy import select

from server.app import create_app
from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import Application, Document, NetworkCheck, Recording, SessionEvent
from tests.e2e.conftest import artifact
from tests.e2e.firefox_flow import (
    KEEP_PCS,
    firefox_intake,
    firefox_joins_queue,
    firefox_precall,
    witness_runs_the_script,
    witness_takes_the_call,
)
from tests.e2e.pages import FAST, PAIRING, LiveApp, Watch, short_disclosure
from tests.firefox import AsyncFirefox, Firefox, media_address
from tests.helpers import add_staff, decode_all, free_port
from tests.server_config import make_config

pytestmark = pytest.mark.browser


@pytest.fixture
async def investor_firefox() -> AsyncIterator[AsyncFirefox]:
    fx = Firefox(size=(480, 900), log=artifact("firefox-investor.log"))
    await asyncio.wait_for(asyncio.to_thread(fx.start), 90)
    try:
        yield AsyncFirefox(fx)
    finally:
        with contextlib.suppress(Exception):  # what the page showed last, pass or fail
            shot = artifact("firefox-investor-last.png")
            await asyncio.wait_for(asyncio.to_thread(fx.screenshot, shot), 20)
        await asyncio.wait_for(asyncio.to_thread(fx.stop), 30)


@pytest.fixture
async def witness_context(call_browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await call_browser.new_context(viewport={"width": 1280, "height": 860}, locale="zh-CN")
    await ctx.add_init_script(KEEP_PCS)
    try:
        yield ctx
    finally:
        await ctx.close()


async def test_firefox_investor_witnessed_by_chromium(
    aiohttp_server: Any,
    tmp_path: Path,
    sqlite_template: Path,
    investor_firefox: AsyncFirefox,
    witness_context: BrowserContext,
) -> None:
    db = tmp_path / "ff.db"
    shutil.copyfile(sqlite_template, db)
    port = free_port()
    config = make_config(
        tmp_path,
        f"sqlite+aiosqlite:///{db}",
        **FAST,
        pairing=PAIRING,
        media={"host_addresses": [media_address()]},
        intake={"require_network_check": True},
        server={"public_url": f"http://127.0.0.1:{port}"},
    )
    server = await aiohttp_server(create_app(config), port=port)
    short_disclosure(server, 0)
    rt = server.app[RUNTIME]
    steps = rt.witnessing.script.steps
    await add_staff(LiveApp(server.app), "wang.wei", {Role.WITNESS})  # type: ignore[arg-type]
    fx = investor_firefox
    wit = await witness_context.new_page()
    wit_watch = Watch(wit)

    await firefox_intake(fx, server, tmp_path)
    async with rt.db.begin() as s:
        app = (await s.scalars(select(Application))).one()
        kinds = (
            await s.scalars(
                select(Document.kind).where(
                    Document.application_id == app.id, Document.active.is_(True)
                )
            )
        ).all()
    assert app.state == "identity_verified"
    assert sorted(kinds) == ["frontal_photo", "id_back", "id_front"]

    # The pre-call check (a test connection to the node), the queue, then the call.
    verdict = await firefox_precall(fx)
    await fx.screenshot(artifact("firefox-precall.png"))
    async with rt.db.begin() as s:
        check = (await s.scalars(select(NetworkCheck))).one()
    assert (check.verdict, check.path) == (verdict, "direct")
    await firefox_joins_queue(fx)
    ff_stats = await witness_takes_the_call(server, fx, wit)
    assert ff_stats["pair"]["local"] == "host", ff_stats
    await witness_runs_the_script(fx, wit, steps, ff_stats)

    for _ in range(100):
        if not rt.media.sessions:
            break
        await asyncio.sleep(0.2)
    assert not rt.media.sessions
    async with rt.db.begin() as s:
        app = (await s.scalars(select(Application))).one()
        recs = (await s.scalars(select(Recording).order_by(Recording.participant))).all()
        starts = (
            await s.scalars(
                select(SessionEvent.offset_ms)
                .where(SessionEvent.kind == "script.step_started")
                .order_by(SessionEvent.id)
            )
        ).all()
    assert app.state == "witnessed"
    assert [(r.participant, r.status) for r in recs] == [
        ("investor", "complete"),
        ("witness", "complete"),
    ]
    assert len(starts) == len(steps)
    for rec in recs:
        counts = decode_all(rt.config.recordings_path / rec.path)  # end to end
        seconds = rec.duration_ms / 1000
        assert seconds > 5, (rec.participant, seconds)
        assert counts["video"] >= 5 * seconds, (rec.participant, counts, seconds)
        assert counts["audio_ms"] >= 0.8 * seconds * 1000, (rec.participant, counts, seconds)
        # Both browsers send the 40 ms Opus packets the answers ask for (audio_packet_ms).
        assert counts["audio_frame_ms"] == 40, (rec.participant, counts)
        assert rec.cues == len(steps)
    assert (await fx.problems()) == {"errors": [], "csp": []}
    wit_watch.assert_clean()
