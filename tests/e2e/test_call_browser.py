"""A witnessed video call in two real Chromium pages through the server (issue 5; A14,
A15, A17.3, A19): paired through the queue, they see and hear each other for ~10 s via
the media node, which records both; the files decode end to end and line up."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, expect
from sqlalchemy import select

from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import Recording, Still
from tests.e2e.conftest import artifact
from tests.e2e.pages import (
    LiveApp,
    Watch,
    call_server,
    remote_playing,
    verified_investor,
    witness_desk,
)
from tests.helpers import add_staff, decode_all

TALK_SECONDS = 10
FPS = 15


# Serial: the two recordings must start within 200 ms of each other and keep 90% of the
# frames; beside another test's load they started 547 ms apart (passing alone).
@pytest.mark.serial
async def test_investor_and_witness_talk_through_the_server_and_both_are_recorded(
    aiohttp_server: Any,
    tmp_path: Path,
    sqlite_template: Path,
    call_contexts: tuple[BrowserContext, BrowserContext],
) -> None:
    server = await call_server(aiohttp_server, tmp_path, sqlite_template)
    rt = server.app[RUNTIME]
    await add_staff(LiveApp(server.app), "wang.wei", {Role.WITNESS})  # type: ignore[arg-type]
    inv_ctx, wit_ctx = call_contexts
    inv, wit = await inv_ctx.new_page(), await wit_ctx.new_page()
    inv_watch, wit_watch = Watch(inv), Watch(wit)

    await verified_investor(server, inv)
    await inv.click("#join-queue")
    await expect(inv.locator("#queue-position")).to_have_text("1")
    await witness_desk(server, wit, "wang.wei")
    await wit.click("#toggle")
    await expect(wit.locator("#work-offer")).to_be_visible(timeout=10_000)
    await wit.click("#offer-accept")

    # Both see each other through the server.
    await remote_playing(inv, "#queue-session")
    await remote_playing(wit, "#work-session")
    await expect(inv.locator("#session-status")).to_contain_text("已与见证人员建立连接")
    await expect(wit.locator("#work-session [data-call=quality]")).to_have_attribute(
        "data-level", "good", timeout=10_000
    )
    started = asyncio.get_running_loop().time()

    # Muting is shown to the other side.
    await inv.click("#queue-session [data-call=mic]")
    await expect(wit.locator("#work-session [data-call=peer-mic]")).to_be_visible()
    await inv.click("#queue-session [data-call=mic]")
    await expect(wit.locator("#work-session [data-call=peer-mic]")).to_be_hidden()

    # A14: the witness takes a frontal photo from the live video.
    await wit.click("#still-capture")
    await expect(wit.locator("#still-list li[data-kind=manual]")).to_have_count(1, timeout=10_000)
    await asyncio.sleep(max(0.0, TALK_SECONDS - (asyncio.get_running_loop().time() - started)))
    await inv.screenshot(path=artifact("call-investor.png"))
    await wit.screenshot(path=artifact("call-witness.png"))
    talked = asyncio.get_running_loop().time() - started

    await wit.click("#session-end")
    await expect(inv.locator("#queue-alert")).to_contain_text("您已回到队列最前", timeout=10_000)
    for _ in range(100):
        if not rt.media.sessions:
            break
        await asyncio.sleep(0.2)
    assert not rt.media.sessions

    root = rt.config.recordings_path
    async with rt.db.begin() as s:
        recs = (await s.scalars(select(Recording).order_by(Recording.participant))).all()
        stills = (await s.scalars(select(Still))).all()
    assert [(r.participant, r.status) for r in recs] == [
        ("investor", "complete"),
        ("witness", "complete"),
    ]
    for rec in recs:
        path = root / rec.path
        assert rec.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        counts = decode_all(path)  # decodes end to end
        seconds = rec.duration_ms / 1000
        assert seconds >= talked - 1, (rec.participant, seconds, talked)
        assert counts["video"] >= 0.9 * FPS * seconds, (rec.participant, counts, seconds)
        # Opus for the whole duration, in the 40 ms packets the answer asked Chromium
        # for (media.audio_packet_ms; its own default is 20 ms).
        assert counts["audio_ms"] >= 0.9 * seconds * 1000, (rec.participant, counts, seconds)
        assert counts["audio_frame_ms"] == 40, (rec.participant, counts)
    # One session clock: the two files start within 200 ms of each other.
    assert abs(recs[0].start_ms - recs[1].start_ms) <= 200, [r.start_ms for r in recs]
    assert sorted(s.kind for s in stills) == ["auto", "manual"]
    inv_watch.assert_clean()
    wit_watch.assert_clean()
