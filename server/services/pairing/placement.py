"""An accepted offer becomes a witness session placed on a media node (A17.3).

Both parties get the node's URL and a short-lived token for that session only. Either
party missing before media starts puts the investor back at the head of the queue and the
witness to not-ready; every step is audited.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from server.audit import append_audit
from server.crypto import DataProtector
from server.domain.application import ApplicationEvent, ApplicationState
from server.domain.errors import Conflict, NotFound
from server.domain.pairing import WaitingInvestor, WitnessState
from server.domain.session import OPEN_STATES, Party, SessionMode, SessionState
from server.queue.base import NodeInfo
from server.services.applications import apply_event, get_application
from server.services.pairing import session_tokens
from server.services.pairing.queueing import (
    QUEUE_CHANGED,
    Pairing,
    investor_channel,
    required_skills,
    witness_channel,
)
from server.store.db import reading
from server.store.models import OneWayAttempt, WitnessSession, utcnow

log = logging.getLogger(__name__)


def session_channel(session_id: str, role: str) -> str:
    return f"session:{session_id}:{role}"


def choose_node(nodes: list[NodeInfo], fallback: NodeInfo) -> NodeInfo:
    """Least loaded live node; ties go to the lexically first id for stable placement."""
    return min(nodes, key=lambda n: (n.load, n.node_id)) if nodes else fallback


@dataclass(frozen=True)
class Placement:
    session_id: str
    node_url: str
    node_id: str
    investor_token: str
    witness_token: str


class Placer:
    def __init__(self, *, pairing: Pairing, protector: DataProtector, self_node: NodeInfo) -> None:
        self.pairing = pairing
        self.protector = protector
        self.self_node = self_node

    async def accept(self, staff_id: int, offer_id: str) -> Placement:
        backend, db, cfg = self.pairing.backend, self.pairing.db, self.pairing.config
        offer = await backend.get_offer(offer_id)
        if offer is None or offer.staff_id != staff_id:
            raise Conflict("offer_gone", "This offer is no longer open.", "该分配已失效。")
        entry = await backend.get_entry(offer.application_id)
        settled = await backend.settle(offer_id, accepted=True, now=time.time())
        if settled is None:
            raise Conflict("offer_gone", "This offer is no longer open.", "该分配已失效。")
        queued_at = entry.investor.enqueued_at if entry else time.time()
        node = choose_node(await backend.live_nodes(now=time.time()), self.self_node)
        async with db.begin() as tx:
            app = await get_application(tx=tx, application_id=offer.application_id)
            await apply_event(
                tx=tx,
                application=app,
                event=ApplicationEvent.START_WITNESSING,
                actor=f"staff:{staff_id}",
                details={"offer": offer_id},
            )
            witness_session = WitnessSession(
                application_id=app.id,
                # A20: the business travels with the session (its script, the desk).
                business_type=app.business_type,
                witness_id=staff_id,
                node_id=node.node_id,
                state=SessionState.PLACED,
                queued_at=datetime.fromtimestamp(queued_at, UTC),
            )
            tx.add(witness_session)
            await tx.flush()
            await append_audit(
                tx,
                actor=f"staff:{staff_id}",
                action="pairing.accepted",
                subject_type="witness_session",
                subject_id=witness_session.id,
                details={"application": app.id, "node": node.node_id, "offer": offer_id},
            )
            session_id = witness_session.id
        expires = time.time() + cfg.session_token_ttl_seconds
        placement = Placement(
            session_id=session_id,
            node_url=node.url,
            node_id=node.node_id,
            investor_token=session_tokens.mint(
                self.protector,
                session_tokens.SessionGrant(
                    session_id, Party.INVESTOR, offer.application_id, expires
                ),
            ),
            witness_token=session_tokens.mint(
                self.protector,
                session_tokens.SessionGrant(session_id, Party.WITNESS, str(staff_id), expires),
            ),
        )
        matched = {"type": "matched", "session_id": session_id, "node_url": node.url}
        await backend.publish(
            investor_channel(offer.application_id), {**matched, "token": placement.investor_token}
        )
        await backend.publish(
            witness_channel(staff_id), {**matched, "token": placement.witness_token}
        )
        await backend.publish(QUEUE_CHANGED, {"reason": "accepted"})
        return placement

    async def open_session_for(self, *, role: str, party: str) -> dict[str, Any] | None:
        """A "matched" message for a party whose socket (re)connects while their session
        waits, with a fresh token: one published while they were offline is not lost."""
        column = (
            WitnessSession.application_id if role == Party.INVESTOR else WitnessSession.witness_id
        )
        value: str | int = party if role == Party.INVESTOR else int(party)
        async with reading(self.pairing.db) as tx:  # every socket's greeting: a read
            witness_session = await tx.scalar(
                select(WitnessSession)
                .where(
                    column == value,
                    WitnessSession.state.in_((SessionState.PLACED, SessionState.LIVE)),
                    WitnessSession.mode == SessionMode.TWO_WAY,
                )
                .order_by(WitnessSession.created_at.desc())
                .limit(1)
            )
            if witness_session is None:
                return None
            node = next(
                (
                    n
                    for n in await self.pairing.backend.live_nodes(now=time.time())
                    if n.node_id == witness_session.node_id
                ),
                self.self_node,
            )
        expires = time.time() + self.pairing.config.session_token_ttl_seconds
        token = session_tokens.mint(
            self.protector, session_tokens.SessionGrant(witness_session.id, role, party, expires)
        )
        return {
            "type": "matched",
            "session_id": witness_session.id,
            "node_url": node.url,
            "token": token,
        }

    async def party_joined(self, session_id: str, role: str) -> bool:
        """Record a party reaching the session; True once both have."""
        async with self.pairing.db.begin() as tx:
            # Row lock: two parties arriving at once must not both read "the other is
            # not here yet" and so neither learn that both have joined.
            witness_session = await tx.get(WitnessSession, session_id, with_for_update=True)
            if (
                witness_session is None
                or witness_session.state not in OPEN_STATES
                # A one-way attempt runs on its own socket (web/ws_oneway.py) only.
                or witness_session.mode != SessionMode.TWO_WAY
            ):
                raise NotFound("session_not_found", "Session not found.", "未找到该见证会话。")
            now = utcnow()
            if role == Party.INVESTOR and witness_session.investor_joined_at is None:
                witness_session.investor_joined_at = now
            elif role == Party.WITNESS and witness_session.witness_joined_at is None:
                witness_session.witness_joined_at = now
            both = (
                witness_session.investor_joined_at is not None
                and witness_session.witness_joined_at is not None
            )
            if both and witness_session.state == SessionState.PLACED:
                witness_session.state = SessionState.LIVE
                witness_session.started_at = now
            await append_audit(
                tx,
                actor=role,
                action="session.joined",
                subject_type="witness_session",
                subject_id=session_id,
                details={"role": role, "node": self.pairing.node_id},
            )
            return both

    async def end_by_witness(self, staff_id: int, session_id: str) -> None:
        """The witness hangs up before a verdict: the investor is queued again (their data
        stands) and the witness goes to wrap-up."""
        async with self.pairing.db.begin() as tx:
            witness_session = await tx.get(WitnessSession, session_id)
            if witness_session is None or witness_session.witness_id != staff_id:
                raise NotFound("session_not_found", "Session not found.", "未找到该见证会话。")
            started = witness_session.started_at
        if started is not None:
            began = started if started.tzinfo else started.replace(tzinfo=UTC)
            await self.pairing.backend.record_handle_time(
                (datetime.now(UTC) - began).total_seconds()
            )
        await self.abort(
            session_id,
            reason="ended_by_witness",
            left_role="witness",
            witness_after=WitnessState.WRAP_UP,
        )

    async def abort(
        self,
        session_id: str,
        *,
        reason: str,
        left_role: str | None,
        witness_after: WitnessState = WitnessState.NOT_READY,
        final_state: str = SessionState.ABORTED,
    ) -> bool:
        """End a session that never got going: investor back to the head of the queue,
        witness to not-ready, both told. False if the session had already ended."""
        backend = self.pairing.backend
        async with self.pairing.db.begin() as tx:
            witness_session = await tx.get(WitnessSession, session_id, with_for_update=True)
            if witness_session is None or witness_session.state not in OPEN_STATES:
                return False
            witness_session.state = final_state
            witness_session.ended_at = utcnow()
            witness_session.notes = reason
            app = await get_application(tx=tx, application_id=witness_session.application_id)
            one_way = witness_session.mode == SessionMode.ONE_WAY
            requeue = app.state == ApplicationState.WITNESSING.value and not one_way
            if app.state == ApplicationState.WITNESSING.value:
                await apply_event(
                    tx=tx,
                    application=app,
                    # A18.4: a one-way attempt cut short may be tried again or turned into
                    # a place in the two-way queue; it never queues by itself.
                    event=(
                        ApplicationEvent.ONE_WAY_FAILED
                        if one_way
                        else ApplicationEvent.SESSION_INTERRUPTED
                    ),
                    actor="system",
                    details={"session": session_id, "reason": reason},
                )
            if one_way:
                attempt = await tx.scalar(
                    select(OneWayAttempt).where(OneWayAttempt.session_id == session_id)
                )
                if attempt is not None and attempt.state == "running":
                    attempt.state, attempt.reason, attempt.ended_at = "failed", reason, utcnow()
            await append_audit(
                tx,
                actor="system",
                action=f"session.{final_state}",
                subject_type="witness_session",
                subject_id=session_id,
                details={"reason": reason, "left": left_role},
            )
            application_id, staff_id = witness_session.application_id, witness_session.witness_id
            log.warning(
                "session aborted",
                extra={"session": session_id, "reason": reason, "left": left_role},
            )
            queued_at = witness_session.queued_at
            phone_hash, id_hash = app.phone_hash, app.id_number_hash or ""
            skills = required_skills(app)
        if requeue:
            # Their original arrival time puts them ahead of everyone who came later.
            first = (
                queued_at.replace(tzinfo=queued_at.tzinfo or UTC).timestamp() if queued_at else 0.0
            )
            await backend.enqueue(
                WaitingInvestor(application_id, first, phone_hash, id_hash, skills),
                now=time.time(),
            )
        notice: dict[str, Any] = {"type": "peer_left", "session_id": session_id, "reason": reason}
        await self._release(
            session_id,
            application_id=application_id,
            staff_id=staff_id,
            witness_after=witness_after,
            notice=notice,
            investor_notice={**notice, "requeued": requeue},
            queue_reason="session_aborted",
        )
        return True

    async def concluded(
        self,
        session_id: str,
        *,
        application_id: str,
        staff_id: int,
        started: datetime | None,
        result: str,
    ) -> dict[str, Any]:
        """The witness gave a verdict (already stored): the handle time counts, the witness
        goes to wrap-up, and both parties' pages and their desks are told."""
        if started is not None:
            began = started if started.tzinfo else started.replace(tzinfo=UTC)
            await self.pairing.backend.record_handle_time(
                (datetime.now(UTC) - began).total_seconds()
            )
        ended: dict[str, Any] = {
            "type": "session_ended",
            "session_id": session_id,
            "result": result,
        }
        await self._release(
            session_id,
            application_id=application_id,
            staff_id=staff_id,
            witness_after=WitnessState.WRAP_UP,
            notice=ended,
            investor_notice=ended,
            queue_reason="session_ended",
        )
        return ended

    async def _release(
        self,
        session_id: str,
        *,
        application_id: str,
        staff_id: int | None,
        witness_after: WitnessState,
        notice: dict[str, Any],
        investor_notice: dict[str, Any],
        queue_reason: str,
    ) -> None:
        """A session is over: its witness leaves BUSY, and everyone watching is told (both
        session sockets, the investor's queue page, the witness's desk, the dispatcher)."""
        backend = self.pairing.backend
        witness = None if staff_id is None else await backend.get_witness(staff_id)
        if witness is not None and witness.state is WitnessState.BUSY:
            await backend.set_witness(
                replace(
                    witness,
                    state=witness_after,
                    since=time.time(),
                    application_id=None,
                    offer_id=None,
                ),
                expect_state=witness.state,
            )
        for party in Party:
            await backend.publish(session_channel(session_id, party), notice)
        await backend.publish(investor_channel(application_id), investor_notice)
        if staff_id is not None:
            await backend.publish(witness_channel(staff_id), notice)
        await backend.publish(QUEUE_CHANGED, {"reason": queue_reason})

    async def stale_placements(self, *, older_than: datetime) -> list[str]:
        """Sessions placed but not joined by both parties in time."""
        # A read: the dispatcher sweeps every 5 s and mostly finds nothing (issue 21: as
        # a write it held SQLite's lock 75 ms a time while 24 sessions joined).
        async with reading(self.pairing.db) as tx:
            rows = await tx.scalars(
                select(WitnessSession.id).where(
                    WitnessSession.state == SessionState.PLACED,
                    WitnessSession.created_at < older_than,
                    # A18: one-way attempts time out on their own terms (services/oneway).
                    WitnessSession.mode == SessionMode.TWO_WAY,
                )
            )
            return list(rows.all())
