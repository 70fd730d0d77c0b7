"""A witnessed video call in two real Chromium pages through the server (issue 5; A14,
A15, A17.3, A19): paired through the queue, they see and hear each other for ~10 s via
the media node, which records both; the files decode end to end and line up."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from sqlalchemy import select

from server.app import create_app
from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import Recording, Still
from tests.conftest import make_config
from tests.e2e.conftest import artifact
from tests.e2e.test_investor_intake_browser import FAST, Watch, short_disclosure
from tests.e2e.test_queue_browser import (
    PAIRING,
    _Client,
    _free_port,
    verified_investor,
    witness_desk,
)
from tests.helpers import add_staff

TALK_SECONDS = 10
FPS = 15


@pytest.fixture
async def call_contexts(
    call_browser: Browser,
) -> AsyncIterator[tuple[BrowserContext, BrowserContext]]:
    investor = await call_browser.new_context(
        viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    witness = await call_browser.new_context(
        viewport={"width": 1280, "height": 860}, locale="zh-CN"
    )
    try:
        yield investor, witness
    finally:
        await investor.close()
        await witness.close()


async def remote_playing(page: Page, root: str) -> None:
    """The other party's video has decoded frames and keeps advancing."""
    video = page.locator(f"{root} [data-call=remote]")
    await expect(video).to_have_js_property("readyState", 4, timeout=20_000)
    first = await video.evaluate("v => v.currentTime")
    await asyncio.sleep(1)
    assert await video.evaluate("v => v.currentTime") > first
    assert await video.evaluate("v => v.videoWidth") == 640
    # Sound comes through too: the remote stream carries a live audio track.
    assert await video.evaluate(
        "v => v.srcObject.getAudioTracks().some(t => t.readyState === 'live')"
    )


def decode_all(path: Path) -> dict[str, int]:
    counts = {"video": 0, "audio": 0}
    with av.open(str(path)) as container:
        for frame in container.decode(*container.streams.video, *container.streams.audio):
            counts["video" if isinstance(frame, av.VideoFrame) else "audio"] += 1
    return counts


async def test_investor_and_witness_talk_through_the_server_and_both_are_recorded(
    aiohttp_server: Any,
    tmp_path: Path,
    sqlite_template: Path,
    call_contexts: tuple[BrowserContext, BrowserContext],
) -> None:
    db = tmp_path / "call.db"
    shutil.copyfile(sqlite_template, db)
    port = _free_port()
    config = make_config(
        tmp_path,
        f"sqlite+aiosqlite:///{db}",
        **FAST,
        pairing=PAIRING,
        server={"public_url": f"http://127.0.0.1:{port}"},
    )
    server = await aiohttp_server(create_app(config), port=port)
    short_disclosure(server, 0)
    rt = server.app[RUNTIME]
    await add_staff(_Client(server.app), "wang.wei", {Role.WITNESS})  # type: ignore[arg-type]
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
    await expect(wit.locator("#still-list li")).to_have_count(1, timeout=10_000)
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
        # Opus in 20 ms frames for the whole duration.
        assert counts["audio"] >= 0.9 * seconds * 50, (rec.participant, counts, seconds)
    # One session clock: the two files start within 200 ms of each other.
    assert abs(recs[0].start_ms - recs[1].start_ms) <= 200, [r.start_ms for r in recs]
    assert sorted(s.kind for s in stills) == ["auto", "manual"]
    inv_watch.assert_clean()
    wit_watch.assert_clean()
