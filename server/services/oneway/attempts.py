"""One-way attempts, database side (A18): who may try, starting one, and its outcome.

An attempt is its own witness session (mode ``one_way``, no witness on the call) placed on
this node, with its own recording; the instructions are drawn when it starts and stored
before the investor sees the first one. Every change is written with its audit entry in
one transaction. The live part (frames, instructions, statement) is ``director.py``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import append_audit
from server.config import OneWayConfig
from server.crypto import DataProtector
from server.domain.application import ApplicationEvent, ApplicationState
from server.domain.errors import Conflict, Forbidden
from server.domain.identity_document import DocumentType, age_on, validate_id_number
from server.domain.liveness import Instruction, LivenessPolicy, draw_sequence
from server.domain.session import Party, SessionMode, SessionState
from server.services.applications import apply_event, get_application
from server.services.intake.steps import ID_CONTEXT
from server.services.pairing import session_tokens
from server.store.models import Application, OneWayAttempt, WitnessSession, utcnow

__all__ = ["Offer", "Started", "attempts_used", "finish", "offer_for", "start"]


@dataclass(frozen=True)
class Offer:
    """Whether the investor may choose one-way now, and if not, why (shown to them)."""

    offered: bool
    reason: str | None
    attempts_left: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "offered": self.offered,
            "reason": self.reason,
            "attempts_left": self.attempts_left,
        }


@dataclass(frozen=True)
class Started:
    attempt_id: str
    session_id: str
    number: int
    token: str
    sequence: tuple[Instruction, ...]


async def attempts_used(tx: AsyncSession, application_id: str) -> int:
    count = await tx.scalar(
        select(func.count())
        .select_from(OneWayAttempt)
        .where(OneWayAttempt.application_id == application_id)
    )
    return int(count or 0)


def _age(app: Application, protector: DataProtector, today: date) -> int | None:
    if app.id_number_enc is None or not app.document_type:
        return None
    number = protector.decrypt(app.id_number_enc, context=ID_CONTEXT)
    info = validate_id_number(number, DocumentType(app.document_type), today=today)
    return age_on(info.birth_date, today)


async def offer_for(
    tx: AsyncSession,
    app: Application,
    *,
    config: OneWayConfig,
    protector: DataProtector,
    today: date,
) -> Offer:
    """A18 is for opening an account; the agency chooses who may use it (age range)."""
    used = await attempts_used(tx, app.id)
    left = max(0, config.attempts - used)
    reason: str | None = None
    if not config.enabled:
        reason = "not_enabled"
    elif app.state != ApplicationState.IDENTITY_VERIFIED.value:
        reason = "not_ready"  # in the queue, in an attempt or a call, or past them
    elif app.business_type != "open":
        reason = "opening_only"
    elif left == 0:
        reason = "attempts_used"
    else:
        age = _age(app, protector, today)
        if age is None or not config.min_age <= age <= config.max_age:
            reason = "not_eligible"
    return Offer(offered=reason is None, reason=reason, attempts_left=left)


REFUSALS: dict[str, tuple[str, str]] = {
    "not_enabled": ("One-way video is not offered.", "本机构未开通单向视频开户。"),
    "opening_only": (
        "One-way video is for opening an account only; please join a video call.",
        "单向视频仅用于开户，请通过双向视频办理。",
    ),
    "attempts_used": (
        "You have used every one-way attempt; please join a video call with a witness.",
        "单向视频尝试次数已用完，请通过双向视频与见证人员连线办理。",
    ),
    "not_ready": (
        "One-way video can be started once the identity check has passed, outside the queue.",
        "身份核验通过且未在排队时，方可开始单向视频。",
    ),
    "not_eligible": (
        "One-way video is not available for you; please join a video call with a witness.",
        "您不适用单向视频开户，请通过双向视频与见证人员连线办理。",
    ),
}


async def start(
    db: async_sessionmaker[AsyncSession],
    *,
    application_id: str,
    config: OneWayConfig,
    protector: DataProtector,
    node_id: str,
    token_ttl: float,
    rng: random.Random | None = None,
) -> Started:
    """Draw the instructions and place a one-way session on this node (A18.3)."""
    policy = policy_of(config)
    async with db.begin() as tx:
        app = await get_application(tx=tx, application_id=application_id)
        if app.state != ApplicationState.IDENTITY_VERIFIED.value:
            raise Conflict(
                "not_ready_for_video",
                "Finish the identity check first (or leave the queue).",
                "请先完成身份核查（或退出排队）。",
                details={"state": app.state},
            )
        offer = await offer_for(tx, app, config=config, protector=protector, today=date.today())
        if not offer.offered:
            en, zh = REFUSALS[offer.reason or "not_enabled"]
            raise Forbidden(f"oneway_{offer.reason}", en, zh)
        sequence = (
            tuple(Instruction(i) for i in config.sandbox_sequence)
            if config.sandbox_sequence
            else draw_sequence(rng or random.SystemRandom(), policy)
        )
        number = config.attempts - offer.attempts_left + 1
        await apply_event(
            tx=tx,
            application=app,
            event=ApplicationEvent.START_ONE_WAY,
            actor="investor",
            details={"attempt": number},
        )
        witness_session = WitnessSession(
            application_id=app.id,
            business_type=app.business_type,
            witness_id=None,
            node_id=node_id,
            state=SessionState.PLACED,
            mode=SessionMode.ONE_WAY,
        )
        tx.add(witness_session)
        await tx.flush()
        attempt = OneWayAttempt(
            application_id=app.id,
            session_id=witness_session.id,
            number=number,
            state="running",
            sequence=[i.value for i in sequence],
        )
        tx.add(attempt)
        await tx.flush()
        await append_audit(
            tx,
            actor="investor",
            action="oneway.started",
            subject_type="witness_session",
            subject_id=witness_session.id,
            details={
                "application": app.id,
                "attempt": number,
                "sequence": [i.value for i in sequence],
            },
        )
        session_id, attempt_id = witness_session.id, attempt.id
    token = session_tokens.mint(
        protector,
        session_tokens.SessionGrant(
            session_id, Party.INVESTOR, application_id, time.time() + token_ttl
        ),
    )
    return Started(attempt_id, session_id, number, token, sequence)


def policy_of(config: OneWayConfig) -> LivenessPolicy:
    return LivenessPolicy(count=config.instructions, seconds=config.instruction_seconds)


async def finish(
    db: async_sessionmaker[AsyncSession],
    *,
    session_id: str,
    passed: bool,
    reason: str | None,
    liveness: dict[str, Any] | None,
    face: dict[str, Any] | None,
    statement: list[dict[str, Any]] | None,
) -> bool:
    """The attempt's outcome: passed → waits for the witness's review (A18.6); failed →
    the investor may try again or join the two-way queue (A18.4). False if the attempt
    had already ended (a crash sweep or a second close got there first)."""
    async with db.begin() as tx:
        witness_session = await tx.get(WitnessSession, session_id, with_for_update=True)
        attempt = await tx.scalar(
            select(OneWayAttempt).where(OneWayAttempt.session_id == session_id)
        )
        if witness_session is None or attempt is None or attempt.state != "running":
            return False
        attempt.state = "passed" if passed else "failed"
        attempt.reason = reason
        attempt.liveness, attempt.face, attempt.statement = liveness, face, statement
        attempt.ended_at = utcnow()
        witness_session.state = SessionState.ENDED if passed else SessionState.ABORTED
        witness_session.ended_at = utcnow()
        witness_session.notes = reason
        app = await get_application(tx=tx, application_id=witness_session.application_id)
        if app.state == ApplicationState.WITNESSING.value:
            await apply_event(
                tx=tx,
                application=app,
                event=(
                    ApplicationEvent.ONE_WAY_RECORDED if passed else ApplicationEvent.ONE_WAY_FAILED
                ),
                actor="system",
                details={"session": session_id, "attempt": attempt.number, "reason": reason},
            )
        await append_audit(
            tx,
            actor="system",
            action="oneway.passed" if passed else "oneway.failed",
            subject_type="witness_session",
            subject_id=session_id,
            details={"attempt": attempt.number, "reason": reason},
        )
    return True


async def mark_joined(db: async_sessionmaker[AsyncSession], session_id: str) -> None:
    async with db.begin() as tx:
        witness_session = await tx.get(WitnessSession, session_id, with_for_update=True)
        if witness_session is not None and witness_session.state == SessionState.PLACED:
            witness_session.state = SessionState.LIVE
            witness_session.investor_joined_at = utcnow()
            witness_session.started_at = utcnow()
