"""A witness, in a real browser, takes a call from the queue to a verdict (issue 6; A12,
A17.3, A17.4): the investor sees the disclosure card and each prompt over the video, and
the recordings carry every step as a cue."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import av
from playwright.async_api import BrowserContext, expect
from sqlalchemy import select

from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import Application, Recording, SessionEvent, Staff
from tests.e2e.conftest import artifact
from tests.e2e.pages import (
    LiveApp,
    Watch,
    call_server,
    remote_playing,
    verified_investor,
    witness_desk,
)
from tests.helpers import PASSWORD, add_staff


async def test_witness_takes_a_call_to_a_pass(
    aiohttp_server: Any,
    tmp_path: Path,
    sqlite_template: Path,
    call_contexts: tuple[BrowserContext, BrowserContext],
) -> None:
    server = await call_server(aiohttp_server, tmp_path, sqlite_template)
    rt = server.app[RUNTIME]
    steps = rt.witnessing.script.steps
    await add_staff(LiveApp(server.app), "wang.wei", {Role.WITNESS})  # type: ignore[arg-type]
    inv_ctx, wit_ctx = call_contexts
    inv, wit = await inv_ctx.new_page(), await wit_ctx.new_page()
    inv_watch, wit_watch = Watch(inv), Watch(wit)

    await verified_investor(server, inv)
    await inv.click("#join-queue")
    await witness_desk(server, wit, "wang.wei")
    await wit.click("#toggle")
    await expect(wit.locator("#work-offer")).to_be_visible(timeout=10_000)
    await wit.click("#offer-accept")
    await remote_playing(inv, "#queue-session")
    await remote_playing(wit, "#work-session")

    # The ID images sit beside the live video.
    for kind in ("id_front", "id_back", "frontal_photo"):
        img = wit.locator(f"#docs img[src$='{kind}']")
        await expect(img).to_have_js_property("complete", True)
        assert await img.evaluate("i => i.naturalWidth") > 0

    # A12: the disclosure card, with the licence number and how to check it.
    await expect(wit.locator("#step-next")).to_be_disabled()
    await wit.click("#disclosure-show")
    card = inv.locator("#queue-session [data-call=disclosure]")
    await expect(card).to_be_visible()
    await expect(card.locator("[data-card=licence_number]")).to_have_text("S0850120090042")
    await expect(card.locator("[data-card=licence_lookup_url]")).to_have_attribute(
        "href", rt.config.agency.licence_lookup_url
    )
    await inv.screenshot(path=artifact("witnessing-investor-disclosure.png"))
    await wit.click("#disclosure-confirm")
    await expect(card.locator("[data-call=disclosure-done]")).to_be_visible()

    # A17.4: each step over the investor's video (and the witness's), marked.
    overlay = inv.locator("#queue-session [data-call=prompt-zh]")
    for i, step in enumerate(steps):
        await expect(wit.locator("#step-next")).to_be_enabled()
        await wit.click("#step-next")
        await expect(overlay).to_have_text(step.text_zh)
        await expect(wit.locator("#work-session [data-call=prompt-zh]")).to_have_text(step.text_zh)
        if i == 2:
            await inv.screenshot(path=artifact("witnessing-investor-prompt.png"))
        await asyncio.sleep(0.5)
        if step.expects_answer:
            await wit.click(".marks [data-mark=clear]")
            await expect(wit.locator("#script-steps li").nth(i).locator(".mark")).to_be_visible()
    await expect(wit.locator("#verdict-pass")).to_be_disabled()
    await expect(wit.locator("#pass-problems")).to_contain_text("人像比对")

    # A17.3: the witness compares and records the judgement; a photo for the file.
    await wit.click("#still-capture")
    await expect(wit.locator("#still-list li[data-kind=manual] img")).to_have_count(
        1, timeout=10_000
    )
    await wit.check("#face-judge input[value=match]")
    await expect(wit.locator("#verdict-pass")).to_be_enabled()
    await wit.screenshot(path=artifact("witnessing-witness-ready-to-pass.png"), full_page=True)
    await wit.click("#verdict-pass")

    await expect(inv.locator("#done-pass")).to_be_visible(timeout=10_000)
    await expect(wit.locator("#desk-notice")).to_contain_text("见证通过")
    await expect(wit.locator("#state-label")).to_contain_text("整理中")
    await inv.screenshot(path=artifact("witnessing-investor-done.png"))
    for _ in range(100):
        if not rt.media.sessions:
            break
        await asyncio.sleep(0.2)
    async with rt.db.begin() as s:
        app = (await s.scalars(select(Application))).one()
        recs = (await s.scalars(select(Recording))).all()
        starts = (
            await s.scalars(
                select(SessionEvent.offset_ms)
                .where(SessionEvent.kind == "script.step_started")
                .order_by(SessionEvent.id)
            )
        ).all()
    assert app.state == "witnessed"
    assert len(recs) == 2
    for rec in recs:
        assert rec.status == "complete" and rec.cues == len(steps)
        with av.open(str(rt.config.recordings_path / rec.path)) as c:
            cues = [(p.pts, bytes(p).decode()) for p in c.demux(c.streams.subtitles[0]) if p.size]
        assert [pts for pts, _ in cues] == list(starts)
        assert all(text.startswith(f"{n + 1}. ") for n, (_, text) in enumerate(cues))
    # A reload after the verdict shows the outcome, not the queue.
    await inv.reload()
    await expect(inv.locator("#done-pass")).to_be_visible()
    inv_watch.assert_clean()
    wit_watch.assert_clean()

    # A17.5: a second person reviews. Approval stays refused until both recordings were
    # played to the end and every document was opened.
    await add_staff(LiveApp(server.app), "rev.li", {Role.REVIEWER})  # type: ignore[arg-type]
    rev_ctx = await wit_ctx.browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[union-attr]
    rev = await rev_ctx.new_page()
    rev_watch = Watch(rev)
    await rev.goto(str(server.make_url("/staff/login")))
    await rev.fill("#username", "rev.li")
    await rev.fill("#password", PASSWORD)
    await rev.click("button[type=submit]")
    await rev.click("#review-link")
    await rev.click("#review-queue a[data-session]")
    videos = rev.locator("video")
    await expect(videos).to_have_count(2)
    # The page claims the review first and only then gives the players their sources: a
    # decision sent before that is refused as unclaimed, not as incomplete.
    await expect(rev.locator("video[src]")).to_have_count(2, timeout=15_000)
    await expect(rev.locator("#approve")).to_be_disabled()
    refused = await rev.evaluate(
        """async () => {
            const csrf = document.querySelector('input[name="csrf_token"]').value;
            const sid = document.querySelector('#review').dataset.session;
            const r = await fetch(`/api/v1/review/sessions/${sid}/decision`, {method: 'POST',
              headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
              body: JSON.stringify({decision: 'approve'})});
            return [r.status, (await r.json()).error.code];
        }"""
    )
    assert refused == [409, "review_incomplete"]
    for i in range(2):
        await expect(videos.nth(i)).to_have_js_property("readyState", 4, timeout=10_000)
    await rev.evaluate("document.querySelectorAll('video').forEach(v => { v.playbackRate = 2; })")
    await rev.click("#play-all")
    for i in range(2):
        await expect(videos.nth(i)).to_have_js_property("ended", True, timeout=30_000)
    await expect(rev.locator(".player.is-complete")).to_have_count(2, timeout=10_000)
    await expect(rev.locator("#approve")).to_be_disabled()  # documents not yet opened
    for item in ("id_front", "id_back", "frontal_photo", "application_data"):
        await rev.click(f".doc[data-item={item}]")
        await expect(rev.locator(f".doc[data-item={item}]")).to_have_class(re.compile("is-opened"))
    await expect(rev.locator("#approve")).to_be_enabled()
    await rev.screenshot(path=artifact("review-ready-to-approve.png"), full_page=True)
    await rev.click("#approve")
    await expect(rev.locator("#decision-done")).to_contain_text("已复核通过")
    async with rt.db.begin() as s:
        assert (await s.scalar(select(Application.state))) == "approved"
    rev_watch.assert_clean()
    await rev_ctx.close()

    # A8/A9: the callback confirms (callback staff's API is tested elsewhere); the
    # account opens and the investor's page shows the numbers and the PDF.
    await add_staff(LiveApp(server.app), "cb.wu", {Role.CALLBACK})  # type: ignore[arg-type]
    async with rt.db.begin() as s:
        cb = await s.scalar(select(Staff).where(Staff.username == "cb.wu"))
        app_id = (await s.scalars(select(Application.id))).one()
    assert cb is not None
    await rt.aftercare.record(staff_id=cb.id, application_id=app_id, outcome="confirmed", notes="")
    await inv.reload()
    await expect(inv.locator("#done-account")).to_be_visible(timeout=10_000)
    number = (await inv.locator("#acct-unified").inner_text()).strip()
    assert re.fullmatch(r"18\d{10}", number)
    async with inv.expect_download() as info:
        await inv.click("#acct-pdf")
    download = await info.value
    pdf = await asyncio.to_thread(Path(await download.path()).read_bytes)
    assert pdf.startswith(b"%PDF")
    await inv.screenshot(path=artifact("investor-account-open.png"))
