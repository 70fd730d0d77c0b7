"""Queueing investors and the witnesses' side of pairing (A7, A17.3).

The queue backend decides atomically who gets whom; the database holds the application
state and the audit trail. Channels: ``witness:<staff id>`` and ``investor:<application
id>`` carry messages to whichever node holds that party's WebSocket.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import append_audit
from server.config import PairingConfig
from server.crypto import mask_id_number
from server.domain.application import ApplicationEvent, ApplicationState
from server.domain.business import label
from server.domain.errors import Conflict, Forbidden, NotFound
from server.domain.pairing import (
    WaitingInvestor,
    WitnessAction,
    WitnessState,
    estimate_wait_seconds,
    witness_transition,
)
from server.domain.staff import Role
from server.queue.base import QueueBackend, WitnessPresence
from server.services.applications import apply_event, get_application
from server.services.staff import witness_problems
from server.store.models import Application, Staff

log = logging.getLogger(__name__)

QUEUE_CHANGED = "queue:changed"


def witness_channel(staff_id: int) -> str:
    return f"witness:{staff_id}"


def investor_channel(application_id: str) -> str:
    return f"investor:{application_id}"


class Pairing:
    """One per process: queue operations on behalf of investors and witnesses."""

    def __init__(
        self,
        *,
        backend: QueueBackend,
        db: async_sessionmaker[AsyncSession],
        config: PairingConfig,
        node_id: str,
        before_queue: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.backend = backend
        # A3: screening must let the application on first (services/compliance/screening).
        self.before_queue = before_queue
        self.db = db
        self.config = config
        self.node_id = node_id

    # -- investors ------------------------------------------------------------------------
    async def join_queue(self, application_id: str) -> int:
        """Queue the application (identity verified first, A17.2); idempotent."""
        if self.before_queue is not None:
            await self.before_queue(application_id)
        now = time.time()
        async with self.db.begin() as tx:
            app = await get_application(tx=tx, application_id=application_id)
            if app.method != "witnessed":
                raise Conflict(
                    "online_service_no_call",
                    "This service was chosen to be done online: confirm it on the page, "
                    "no video call is needed.",
                    "您选择了网上办理该业务，请在页面上确认，无需视频见证。",
                )
            if app.state == ApplicationState.QUEUED.value:
                entry = _entry(app, now)
                # Self-healing: a restarted in-process queue forgets; the database does not.
                await self.backend.enqueue(entry, now=now)
            else:
                await apply_event(
                    tx=tx,
                    application=app,
                    event=ApplicationEvent.JOIN_QUEUE,
                    actor="investor",
                    details={"node": self.node_id},
                )
                entry = _entry(app, now)
                if not await self.backend.enqueue(entry, now=now):
                    raise Conflict(
                        "already_queued",
                        "This application is already in the queue.",
                        "该申请已在排队中。",
                    )
        await self.backend.publish(QUEUE_CHANGED, {"reason": "joined"})
        position = await self.backend.position(application_id)
        return position or 0

    async def leave_queue(self, application_id: str, *, reason: str = "left") -> None:
        removed = await self.backend.remove_investor(application_id)
        async with self.db.begin() as tx:
            app = await get_application(tx=tx, application_id=application_id)
            if app.state == ApplicationState.QUEUED.value:
                await apply_event(
                    tx=tx,
                    application=app,
                    event=ApplicationEvent.LEAVE_QUEUE,
                    actor="investor" if reason == "left" else "system",
                    details={"reason": reason, "was_queued": removed},
                )
        await self.backend.publish(QUEUE_CHANGED, {"reason": reason})

    async def investor_status(self, application_id: str) -> dict[str, Any]:
        position = await self.backend.position(application_id)
        witnesses = await self.backend.witnesses()
        on_duty = sum(
            1 for w in witnesses if w.state not in (WitnessState.OFFLINE, WitnessState.NOT_READY)
        )
        waiting = await self.backend.waiting()
        return {
            "type": "queue",
            "queued": position is not None,
            "position": position,
            "queue_length": len(waiting),
            "estimated_wait_seconds": (
                estimate_wait_seconds(position, await self.backend.handle_times(), on_duty)
                if position
                else None
            ),
        }

    async def investor_heartbeat(self, application_id: str) -> bool:
        return await self.backend.touch_investor(application_id, now=time.time())

    # -- witnesses ------------------------------------------------------------------------
    async def _staff(self, tx: AsyncSession, staff_id: int) -> Staff:
        staff = await tx.get(Staff, staff_id)
        if staff is None or not staff.active:
            raise NotFound("staff_not_found", "Staff member not found.", "未找到该员工。")
        if Role.WITNESS.value not in staff.role_set:
            raise Forbidden(
                "not_a_witness", "Only witnesses can take calls.", "仅见证人员可接入见证。"
            )
        return staff

    async def witness_connect(self, staff_id: int) -> WitnessPresence:
        """A console connected: present as not-ready unless already in a state."""
        now = time.time()
        async with self.db.begin() as tx:
            staff = await self._staff(tx, staff_id)
        current = await self.backend.get_witness(staff_id)
        if current is not None and current.state is not WitnessState.OFFLINE:
            await self.backend.touch_witness(staff_id, now=now)
            return replace(current, node_id=self.node_id, last_seen=now)
        presence = WitnessPresence(
            staff_id=staff_id,
            state=witness_transition(WitnessState.OFFLINE, WitnessAction.CONNECT),
            node_id=self.node_id,
            since=now,
            last_seen=now,
            phone_hash=staff.phone_hash or "",
            id_hash=staff.id_number_hash or "",
            skills=frozenset(x for x in staff.skills.split(",") if x),
        )
        await self.backend.set_witness(presence, expect_state=WitnessState.OFFLINE)
        return (await self.backend.get_witness(staff_id)) or presence

    async def _change(self, staff_id: int, action: WitnessAction) -> WitnessPresence:
        """Apply a witness action with compare-and-set, retrying if the state moved."""
        for _ in range(5):
            current = await self.backend.get_witness(staff_id)
            if current is None:
                raise Conflict(
                    "witness_offline", "Your console is not connected.", "工作台未连接。"
                )
            new_state = witness_transition(current.state, action)
            now = time.time()
            updated = replace(
                current,
                state=new_state,
                since=now,
                last_seen=now,
                offer_id=None,
                application_id=current.application_id if new_state is WitnessState.BUSY else None,
            )
            if await self.backend.set_witness(updated, expect_state=current.state):
                return updated
        raise Conflict("witness_busy", "Please try again.", "请重试。")

    async def witness_ready(self, staff_id: int, *, actor: str) -> WitnessPresence:
        async with self.db.begin() as tx:
            staff = await self._staff(tx, staff_id)
            problems = witness_problems(staff)
            if problems:
                # A7/A24: an ineligible witness can never go ready, so never be paired.
                raise Forbidden(
                    "witness_not_eligible",
                    "You are not eligible to witness: " + ", ".join(problems),
                    "您目前不具备见证资格：" + "、".join(problems),
                    details={"problems": problems},
                )
            current = await self.backend.get_witness(staff_id)
            action = (
                WitnessAction.FINISH_WRAP_UP
                if current is not None and current.state is WitnessState.WRAP_UP
                else WitnessAction.GO_READY
            )
            presence = await self._change(staff_id, action)
            await append_audit(
                tx,
                actor=actor,
                action="witness.ready",
                subject_type="staff",
                subject_id=staff_id,
                details={"node": self.node_id},
            )
        await self.backend.publish(QUEUE_CHANGED, {"reason": "witness_ready"})
        return presence

    async def witness_not_ready(self, staff_id: int, *, actor: str) -> WitnessPresence:
        presence = await self._change(staff_id, WitnessAction.GO_NOT_READY)
        async with self.db.begin() as tx:
            await append_audit(
                tx,
                actor=actor,
                action="witness.not_ready",
                subject_type="staff",
                subject_id=staff_id,
                details={},
            )
        return presence

    async def witness_heartbeat(self, staff_id: int) -> bool:
        return await self.backend.touch_witness(staff_id, now=time.time())

    async def decline(self, staff_id: int, offer_id: str, *, reason: str = "declined") -> None:
        offer = await self.backend.get_offer(offer_id)
        if offer is None or offer.staff_id != staff_id:
            raise Conflict("offer_gone", "This offer is no longer open.", "该分配已失效。")
        settled = await self.backend.settle(offer_id, accepted=False, now=time.time())
        if settled is None:
            raise Conflict("offer_gone", "This offer is no longer open.", "该分配已失效。")
        async with self.db.begin() as tx:
            await append_audit(
                tx,
                actor=f"staff:{staff_id}" if reason == "declined" else "system",
                action=f"pairing.offer_{reason}",
                subject_type="application",
                subject_id=offer.application_id,
                details={"staff_id": staff_id, "offer": offer_id},
            )
        await self.backend.publish(
            witness_channel(staff_id),
            {"type": "offer_closed", "offer_id": offer_id, "reason": reason},
        )
        await self.backend.publish(QUEUE_CHANGED, {"reason": f"offer_{reason}"})

    async def queue_length(self) -> int:
        return len(await self.backend.waiting())


def required_skills(app: Application) -> frozenset[str]:
    """What a witness must be able to handle for this investor (when matching skills):
    residence-permit holders from Hong Kong, Macau or Taiwan need a witness marked "hmt";
    a holder's service (A20) a witness marked "svc:<business type>" ("svc:cancel")."""
    skills = {"hmt"} if app.document_type == "hmt_residence_permit" else set()
    if app.business_type and app.business_type != "open":
        skills.add(f"svc:{app.business_type}")
    return frozenset(skills)


def _entry(app: Application, now: float) -> WaitingInvestor:
    return WaitingInvestor(
        app.id, now, app.phone_hash, app.id_number_hash or "", required_skills(app)
    )


async def offer_summary(tx: AsyncSession, application_id: str, protector: Any) -> dict[str, Any]:
    """What a witness sees with an offer: enough to recognise the case, ID number masked."""
    app: Application = await get_application(tx=tx, application_id=application_id)
    number = (
        protector.decrypt(app.id_number_enc, context="applications.id_number")
        if app.id_number_enc
        else ""
    )
    return {
        "application_id": app.id,
        "name": app.investor_name,
        "document_type": app.document_type,
        "id_number_masked": mask_id_number(number) if number else None,
        "risk_level": app.risk_level,
        # A20: which business the investor comes for, named before the witness accepts.
        "business_type": app.business_type,
        "business_label": list(label(app.business_type)),
    }
