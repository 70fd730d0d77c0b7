"""A witness takes a call from disclosure to verdict over the session socket, with real
media: prompts reach the investor, cues land in both recordings, the verdict moves the
application (A12, A17.3, A17.4)."""

from __future__ import annotations

import asyncio
from typing import Any

import av
from sqlalchemy import select

from server.http.keys import RUNTIME
from server.store.models import Application, AuditEntry, Recording, SessionEvent, WitnessSession
from tests.call_flow import paired
from tests.helpers import wait_for
from tests.media_client import Party


async def _state(party: Party, message: dict[str, Any]) -> dict[str, Any]:
    await party.ws.send_json(message)
    return await party.next_of("script_state")


async def _error(party: Party, message: dict[str, Any]) -> str:
    await party.ws.send_json(message)
    return str((await party.next_of("error"))["error"]["code"])


async def test_disclosure_script_face_and_pass(mclient: Any) -> None:
    rt = mclient.app[RUNTIME]
    steps = rt.witnessing.script.steps
    sid, w_token, i_token, extra = await paired(mclient)
    witness, investor = Party(mclient, sid, w_token), Party(mclient, sid, i_token)
    await witness.join()
    await investor.join()
    await asyncio.gather(witness.start_media(), investor.start_media())
    await wait_for(lambda: witness.received["video"] >= 5 and investor.received["video"] >= 5)
    state = next(m for m in witness.messages if m["type"] == "script_state")  # on joining
    assert state["disclosure_shown"] is False and state["current"] is None

    # Nothing before the disclosure; only the witness acts.
    assert await _error(witness, {"type": "step_start", "index": 0}) == "disclosure_first"
    assert await _error(investor, {"type": "step_start", "index": 0}) == "witness_only"
    # Every witness message from the investor gets the same answer (one table, one check).
    for kind in ("unmask_id", "capture_still", "verdict", "face_judge"):
        assert await _error(investor, {"type": kind}) == "witness_only"
    assert await _error(investor, {"type": ["offer"]}) == "unknown_message"
    assert await _error(witness, {"type": "disclosure_confirm"}) == "disclosure_not_shown"

    state = await _state(witness, {"type": "disclosure_show"})
    card = (await investor.next_of("disclosure"))["card"]
    assert card["licence_number"] == "S0850120090042" and card["hotline"]
    assert card["licence_lookup_url"].startswith("https://")
    state = await _state(witness, {"type": "disclosure_confirm"})
    assert state["disclosure_confirmed"] is True
    await investor.next_of("disclosure_done")

    for i, step in enumerate(steps):
        state = await _state(witness, {"type": "step_start", "index": i})
        prompt = await investor.next_of("prompt")
        assert prompt["index"] == i and prompt["step"]["text_zh"] == step.text_zh
        if i == 1:
            # A17.4: an unclear answer needs a note, and is then re-asked.
            assert (
                await _error(witness, {"type": "step_mark", "index": i, "mark": "unclear"})
                == "note_required"
            )
            await _state(
                witness, {"type": "step_mark", "index": i, "mark": "unclear", "note": "杂音"}
            )
        await asyncio.sleep(0.3)
        if step.expects_answer:
            state = await _state(witness, {"type": "step_mark", "index": i, "mark": "clear"})
    assert state["pass_problems"] == ["face_not_matched"]
    await witness.ws.send_json({"type": "verdict", "result": "pass"})
    assert (await witness.next_of("error"))["error"]["code"] == "verdict_incomplete"

    # The similarity aid runs on every still (no face in this synthetic video: no score).
    await witness.ws.send_json({"type": "capture_still"})
    still = await witness.next_still("manual")
    score = await witness.next_of("face_score")
    assert score["still"] == still["id"] and score["likely_same"] is False
    assert set(score["distances"]) == {"id_front", "frontal_photo"}
    state = await _state(witness, {"type": "face_judge", "judgement": "match"})
    assert state["pass_problems"] == []
    await witness.ws.send_json({"type": "unmask_id"})
    assert (await witness.next_of("id_number"))["value"] == "11010519491231002X"
    await witness.ws.send_json({"type": "verdict", "result": "pass"})
    assert (await investor.next_of("session_ended"))["result"] == "pass"
    await wait_for(lambda: sid not in rt.media.sessions)

    async with rt.db.begin() as s:
        ws = await s.get(WitnessSession, sid)
        app = (await s.scalars(select(Application))).one()
        recs = (await s.scalars(select(Recording).where(Recording.session_id == sid))).all()
        starts = (
            await s.scalars(
                select(SessionEvent.offset_ms)
                .where(SessionEvent.kind == "script.step_started")
                .order_by(SessionEvent.id)
            )
        ).all()
        actions = (await s.scalars(select(AuditEntry.action))).all()
    assert ws is not None and ws.state == "ended" and ws.verdict == "pass"
    assert app.state == "witnessed"
    for action in ("disclosure.shown", "disclosure.confirmed", "script.step_marked",
                   "face.judged", "session.verdict", "id_number.unmasked"):  # fmt: skip
        assert action in actions
    # Every step is a cue in both recordings, at the time it was shown.
    for rec in recs:
        assert rec.cues == len(steps)
        with av.open(str(rt.config.recordings_path / rec.path)) as c:
            cues = [(p.pts, bytes(p).decode()) for p in c.demux(c.streams.subtitles[0]) if p.size]
        assert [pts for pts, _ in cues] == list(starts)
        assert cues[0][1].startswith("1. " + steps[0].text_zh)
    for party in (witness, investor):
        await party.close()
    extra[0].cancel()
    for sock in extra[1:]:
        await sock.close()


async def test_fail_needs_a_reason_and_ends_the_session(mclient: Any) -> None:
    rt = mclient.app[RUNTIME]
    sid, w_token, i_token, extra = await paired(mclient)
    witness, investor = Party(mclient, sid, w_token), Party(mclient, sid, i_token)
    await witness.join()
    await investor.join()
    # The session's witness sees the ID images while the session is open (audited).
    doc = await mclient.get(f"/staff/witness/sessions/{sid}/documents/id_front")
    assert doc.status == 200 and doc.headers["Content-Type"] == "image/jpeg"
    assert (await mclient.get(f"/staff/witness/sessions/{sid}/documents/passwd")).status == 404
    assert (await mclient.get("/staff/witness/sessions/nope/documents/id_front")).status == 404
    await witness.ws.send_json({"type": "verdict", "result": "fail"})
    assert (await witness.next_of("error"))["error"]["code"] == "reason_required"
    await witness.ws.send_json({"type": "verdict", "result": "fail", "reason_code": "coerced"})
    assert (await investor.next_of("session_ended"))["result"] == "fail"
    async with rt.db.begin() as s:
        ws = await s.get(WitnessSession, sid)
        app = (await s.scalars(select(Application))).one()
    assert ws is not None and ws.verdict == "fail" and ws.reason_code == "coerced"
    assert app.state == "witness_failed"
    # Once the session is over, the images are no longer the witness's to see.
    assert (await mclient.get(f"/staff/witness/sessions/{sid}/documents/id_front")).status == 404
    async with rt.db.begin() as s:
        assert "document.viewed" in (await s.scalars(select(AuditEntry.action))).all()
    presence = await rt.queue.get_witness(ws.witness_id)
    assert presence is not None and presence.state.value == "wrap_up"
    for party in (witness, investor):
        await party.close()
    extra[0].cancel()
    for sock in extra[1:]:
        await sock.close()
