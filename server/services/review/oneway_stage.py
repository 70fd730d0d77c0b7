"""A18.6: a one-way recording's first review, by a witness, before the reviewer's.

The witness takes the recording (it becomes "their" session, so the reviewer after them
is a second person: four eyes as in A17.5), plays every recording of the attempt in full
and opens every document under the same coverage rule as a reviewer, with the machine's
liveness, face and statement results on the timeline, and passes or fails it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import append_audit
from server.domain.application import ApplicationEvent, ApplicationState
from server.domain.coverage import coverage_record
from server.domain.errors import Conflict, Forbidden
from server.domain.session import SessionState, Verdict
from server.domain.staff import Role
from server.services.applications import apply_event, get_application
from server.store.models import Review, WitnessSession, utcnow

REVIEW_STAGE_WITNESS = "witness"
REVIEW_STAGE_REVIEWER = "reviewer"


async def claim_recording(
    tx: AsyncSession, witness_session: WitnessSession, *, staff_id: int, roles: frozenset[str]
) -> None:
    if Role.WITNESS not in roles:
        raise Forbidden(
            "witness_only",
            "A witness reviews a one-way recording first (A18.6).",
            "单向视频须先由见证人员审核。",
        )
    app = await get_application(tx=tx, application_id=witness_session.application_id)
    if (
        witness_session.witness_id not in (None, staff_id)
        or app.state != ApplicationState.ONE_WAY_RECORDED.value
        # A passed attempt only (a failed one's session is aborted, its recording kept
        # as evidence of the failure).
        or witness_session.state != SessionState.ENDED
    ):
        raise Conflict(
            "review_taken",
            "This recording is being or was reviewed.",
            "该录像已由他人审核或正在审核。",
        )
    mine = await tx.scalar(
        select(Review).where(
            Review.session_id == witness_session.id,
            Review.reviewer_id == staff_id,
            Review.decision.is_(None),
        )
    )
    if mine is not None:
        return
    witness_session.witness_id = staff_id
    tx.add(
        Review(
            application_id=app.id,
            session_id=witness_session.id,
            reviewer_id=staff_id,
            stage=REVIEW_STAGE_WITNESS,
        )
    )
    await append_audit(
        tx,
        actor=f"staff:{staff_id}",
        action="oneway.review_claimed",
        subject_type="witness_session",
        subject_id=witness_session.id,
        details={"application": app.id},
    )


def close_review(
    review: Review, *, decision: str, reason_code: str | None, notes: str, status: dict[str, Any]
) -> None:
    """A review's decision with the coverage that backed it (both stages)."""
    review.decision = decision
    review.reason_code = reason_code if decision == "reject" else None
    review.notes = notes[:1000] or None
    review.coverage = coverage_record(status)
    review.decided_at = utcnow()


async def decide_recording(
    tx: AsyncSession,
    review: Review,
    *,
    staff_id: int,
    passed: bool,
    reason_code: str | None,
    notes: str,
    status: dict[str, Any],
) -> str:
    if status["approve_problems"]:
        # Passing or failing alike: the witness's verdict rests on the whole recording.
        raise Conflict(
            "review_incomplete",
            "Play every recording through and open every document before deciding.",
            "须完整播放全部录像并查看全部资料后方可作出结论。",
            details={"problems": status["approve_problems"]},
        )
    witness_session = await tx.get(WitnessSession, review.session_id, with_for_update=True)
    assert witness_session is not None
    app = await get_application(tx=tx, application_id=review.application_id)
    await apply_event(
        tx=tx,
        application=app,
        event=ApplicationEvent.WITNESS_PASSED if passed else ApplicationEvent.WITNESS_FAILED,
        actor=f"staff:{staff_id}",
        details={"session": review.session_id, "reason": reason_code, "one_way": True},
    )
    witness_session.verdict = Verdict.PASS if passed else Verdict.FAIL
    witness_session.reason_code = None if passed else reason_code
    witness_session.notes = notes[:1000] or witness_session.notes
    close_review(
        review, decision="approve" if passed else "reject", reason_code=reason_code,
        notes=notes, status=status,
    )  # fmt: skip
    await append_audit(
        tx,
        actor=f"staff:{staff_id}",
        action="oneway.reviewed",
        subject_type="witness_session",
        subject_id=review.session_id,
        details={"passed": passed, "reason": reason_code, "coverage": review.coverage},
    )
    return app.state
