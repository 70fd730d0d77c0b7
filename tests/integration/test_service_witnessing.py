"""A holder's service witnessed by video (A17.4, A20–A22): the session of a cancellation
carries its business, the desk gets the cancellation script and the accounts with the
account system's precheck, the investor's call screen names the business, and marks and
a verdict work on that script."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from server.domain.business import HOLDER_SERVICES, BusinessType
from server.http.keys import RUNTIME
from server.services.service_requests import ServiceRequest, write_service
from server.store.models import Application, SessionEvent, WitnessSession
from tests.call_flow import paired
from tests.media_client import Party

# 张三's accounts in the sandbox account system (server/content/sandbox_holders.toml): the
# precheck is asked again as the holder joins the queue, so they must be real ones there.
UNIFIED, SHANGHAI = "181000000501", "A100000501"


async def _state(party: Party, message: dict[str, Any]) -> dict[str, Any]:
    await party.ws.send_json(message)
    return await party.next_of("script_state")


async def test_a_cancellation_is_witnessed_with_its_script(mclient: Any) -> None:
    rt = mclient.app[RUNTIME]
    cancel = rt.witnessing.scripts[BusinessType.CANCEL]
    assert cancel.version != rt.witnessing.script.version

    async def as_cancellation() -> None:
        # The holder's entrance is built elsewhere: the application is made a
        # cancellation of two accounts, the account system refusing one of them.
        async with rt.db.begin() as tx:
            app = (await tx.scalars(select(Application))).one()
            app.business_type = "cancel"
            accounts: list[dict[str, Any]] = [
                {"number": UNIFIED, "market": "unified", "status": "normal",
                 "opening_method": "two_way_video_witnessing"},
                {"number": SHANGHAI, "market": "sh", "status": "normal",
                 "opening_method": "two_way_video_witnessing", "designated_trading": True},
            ]  # fmt: skip
            write_service(
                app,
                ServiceRequest(
                    business_type="cancel",
                    method="witnessed",
                    accounts=accounts,
                    chosen=[SHANGHAI, UNIFIED],
                    precheck=[
                        {
                            "account_number": SHANGHAI,
                            "ok": False,
                            "error_code": "designated_trading",
                        },
                        {"account_number": UNIFIED, "ok": True, "error_code": None},
                    ],
                ),
                rt.protector,
            )

    sid, w_token, i_token, extra = await paired(mclient, before_queue=as_cancellation)
    async with rt.db.begin() as tx:
        witness_session = await tx.get(WitnessSession, sid)
        assert witness_session is not None and witness_session.business_type == "cancel"

    witness, investor = Party(mclient, sid, w_token), Party(mclient, sid, i_token)
    await witness.join()
    state = await witness.next_of("script_state")
    await investor.join()
    # The desk: the cancellation's script, the business named, the accounts with the
    # precheck (the refusal in both languages), numbers masked.
    assert state["script_version"] == cancel.version
    assert [s["id"] for s in state["steps"]] == [s.id for s in cancel.steps]
    assert "settled" in [s["id"] for s in state["steps"]]
    business = state["business"]
    assert business["business_type"] == "cancel"
    assert (business["label_zh"], business["label_en"]) == (
        "注销证券账户",
        "Cancel a securities account",
    )
    sh, unified = business["accounts"]
    assert sh["market"] == "sh" and sh["status"] == "normal"
    assert sh["number_masked"] != SHANGHAI and sh["number_masked"].endswith("0501")
    assert "number" not in sh
    assert sh["precheck"]["ok"] is False and sh["precheck"]["error_code"] == "designated_trading"
    assert (
        "指定交易" in sh["precheck"]["message_zh"] and "designated" in sh["precheck"]["message_en"]
    )
    # Asked again at the queue: the unified account waits for its Shanghai account.
    assert unified["precheck"]["error_code"] == "sub_accounts_open"
    # The investor's call screen names the business.
    named = await investor.next_of("business")
    assert named["label_zh"] == "注销证券账户" and "accounts" not in named

    await _state(witness, {"type": "disclosure_show"})
    await _state(witness, {"type": "disclosure_confirm"})
    for i, step in enumerate(cancel.steps):
        await _state(witness, {"type": "step_start", "index": i})
        prompt = await investor.next_of("prompt")
        assert prompt["step"]["id"] == step.id and prompt["step"]["text_zh"] == step.text_zh
        if step.expects_answer:
            state = await _state(witness, {"type": "step_mark", "index": i, "mark": "clear"})
    assert state["marks"] == ["clear"] * len(cancel.steps)
    assert state["pass_problems"] == ["face_not_matched"]
    state = await _state(witness, {"type": "face_judge", "judgement": "match"})
    assert state["pass_problems"] == []
    await witness.ws.send_json({"type": "verdict", "result": "pass"})
    assert (await investor.next_of("session_ended"))["result"] == "pass"

    async with rt.db.begin() as tx:
        witness_session = await tx.get(WitnessSession, sid)
        events = (
            await tx.execute(
                select(SessionEvent.kind, SessionEvent.payload)
                .where(SessionEvent.session_id == sid)
                .order_by(SessionEvent.id)
            )
        ).all()
    assert witness_session is not None and witness_session.verdict == "pass"
    payloads = {kind: payload for kind, payload in events}
    assert payloads["disclosure.shown"]["script_version"] == cancel.version
    assert payloads["session.verdict"]["script_version"] == cancel.version
    marked = [p["step"] for kind, p in events if kind == "script.step_marked"]
    assert marked == [s.id for s in cancel.steps if s.expects_answer]
    for party in (witness, investor):
        await party.close()
    extra[0].cancel()
    for sock in extra[1:]:
        await sock.close()


async def test_a_service_fails_with_a_service_reason(mclient: Any) -> None:
    rt = mclient.app[RUNTIME]

    async def as_query() -> None:
        async with rt.db.begin() as tx:
            app = (await tx.scalars(select(Application))).one()
            app.business_type = "query"

    sid, w_token, i_token, extra = await paired(mclient, before_queue=as_query)
    witness, investor = Party(mclient, sid, w_token), Party(mclient, sid, i_token)
    await witness.join()
    state = await witness.next_of("script_state")
    await investor.join()
    query = rt.witnessing.scripts[BusinessType.QUERY]
    assert state["script_version"] == query.version
    # No service request stored: the business is named, no accounts listed.
    assert state["business"]["label_en"] == "Account query" and state["business"]["accounts"] == []
    await witness.ws.send_json(
        {"type": "verdict", "result": "fail", "reason_code": "not_account_holder"}
    )
    assert (await investor.next_of("session_ended"))["result"] == "fail"
    async with rt.db.begin() as tx:
        witness_session = await tx.get(WitnessSession, sid)
    assert witness_session is not None and witness_session.reason_code == "not_account_holder"
    for party in (witness, investor):
        await party.close()
    extra[0].cancel()
    for sock in extra[1:]:
        await sock.close()


@pytest.mark.parametrize("kind", [t.value for t in HOLDER_SERVICES if t is not BusinessType.CANCEL])
async def test_every_other_service_is_witnessed_to_a_pass_with_its_script(
    mclient: Any, kind: str
) -> None:
    """A20: each service the agency offers runs through the witness flow on its own
    script (the cancellation, with its accounts, above)."""
    rt = mclient.app[RUNTIME]
    script = rt.witnessing.scripts[BusinessType(kind)]

    async def as_service() -> None:
        async with rt.db.begin() as tx:
            app = (await tx.scalars(select(Application))).one()
            app.business_type = kind

    sid, w_token, i_token, extra = await paired(mclient, before_queue=as_service)
    witness, investor = Party(mclient, sid, w_token), Party(mclient, sid, i_token)
    await witness.join()
    state = await witness.next_of("script_state")
    await investor.join()
    assert state["script_version"] == script.version != rt.witnessing.script.version
    assert state["business"]["business_type"] == kind
    assert (await investor.next_of("business"))["business_type"] == kind
    await _state(witness, {"type": "disclosure_show"})
    await _state(witness, {"type": "disclosure_confirm"})
    for i, step in enumerate(script.steps):
        await _state(witness, {"type": "step_start", "index": i})
        assert (await investor.next_of("prompt"))["step"]["id"] == step.id
        if step.expects_answer:
            state = await _state(witness, {"type": "step_mark", "index": i, "mark": "clear"})
    state = await _state(witness, {"type": "face_judge", "judgement": "match"})
    assert state["pass_problems"] == []
    await witness.ws.send_json({"type": "verdict", "result": "pass"})
    assert (await investor.next_of("session_ended"))["result"] == "pass"
    async with rt.db.begin() as tx:
        witness_session = await tx.get(WitnessSession, sid)
        app = await tx.get(Application, witness_session.application_id if witness_session else "")
    assert witness_session is not None and witness_session.business_type == kind
    assert app is not None and app.state == "witnessed"  # on to review, as an opening
    for party in (witness, investor):
        await party.close()
    extra[0].cancel()
    for sock in extra[1:]:
        await sock.close()
