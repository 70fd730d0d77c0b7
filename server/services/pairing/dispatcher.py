"""The pairing loop. Every node runs one; a lease in the queue backend lets only one act at
a time, and the backend's atomic claim keeps even two overlapping leaders from pairing
anyone twice. It runs on every queue change and on a fallback tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from server.audit import append_audit
from server.crypto import DataProtector
from server.domain.pairing import AssignmentPolicy, ReadyWitness, WitnessState, choose_pairs
from server.domain.session import SessionState
from server.queue.base import NodeInfo, Offer
from server.services.pairing.placement import Placer
from server.services.pairing.queueing import QUEUE_CHANGED, Pairing, offer_summary, witness_channel
from server.store.models import WitnessSession

log = logging.getLogger(__name__)

LOCK_NAME = "dispatcher"


class Dispatcher:
    def __init__(
        self,
        *,
        pairing: Pairing,
        placer: Placer,
        protector: DataProtector,
        node: NodeInfo,
        live_sessions: Callable[[], int] | None = None,
        queue_gauge: Callable[[float], None] | None = None,
    ) -> None:
        self.queue_gauge = queue_gauge
        self.pairing = pairing
        self.placer = placer
        self.protector = protector
        self.node = node
        self.owner = f"{node.node_id}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._stopping = False
        self._rng = random.SystemRandom()
        self._live_sessions = live_sessions
        self._last_placement_sweep = 0.0

    # -- one round --------------------------------------------------------------------------
    async def run_once(self) -> int:
        """Expire, sweep and pair; returns the number of offers made."""
        backend, cfg = self.pairing.backend, self.pairing.config
        now = time.time()
        for offer in await backend.expired_offers(now=now):
            with contextlib.suppress(Exception):
                await self.pairing.decline(offer.staff_id, offer.offer_id, reason="timeout")
        for staff_id in await backend.stale_witnesses(
            older_than=now - cfg.witness_presence_ttl_seconds
        ):
            gone = await backend.remove_witness(staff_id)
            await self._audit("witness.presence_expired", "staff", str(staff_id), {})
            if gone is not None and gone.state is WitnessState.BUSY and gone.application_id:
                await self._abort_for(gone.application_id, "witness_gone")
        for application_id in await backend.stale_investors(
            older_than=now - cfg.investor_grace_seconds
        ):
            await self.pairing.leave_queue(application_id, reason="investor_gone")
        # A database query, and a round runs at every queue change: placements are swept
        # a few times per join timeout, not every round (issue 21: a node's idle cost).
        if now - self._last_placement_sweep >= min(5.0, cfg.join_timeout_seconds / 6):
            self._last_placement_sweep = now
            cutoff = datetime.now(UTC) - timedelta(seconds=cfg.join_timeout_seconds)
            for session_id in await self.placer.stale_placements(older_than=cutoff):
                await self.placer.abort(session_id, reason="join_timeout", left_role=None)
        return await self._pair(now)

    async def _pair(self, now: float) -> int:
        backend, cfg = self.pairing.backend, self.pairing.config
        entries = await backend.waiting()
        if self.queue_gauge is not None:
            self.queue_gauge(len(entries))
        waiting = [e.investor for e in entries if e.offered_to is None]
        if not waiting:
            return 0
        ready = [
            ReadyWitness(w.staff_id, w.since, w.phone_hash, w.id_hash, w.skills)
            for w in await backend.witnesses()
            if w.state is WitnessState.READY
            # A7: only a live console gets an investor.
            and w.last_seen >= now - cfg.witness_presence_ttl_seconds
        ]
        pairs = choose_pairs(
            waiting,
            ready,
            policy=AssignmentPolicy(cfg.policy),
            match_skills=cfg.match_skills,
            rng=self._rng,
        )
        made = 0
        for investor, witness in pairs:
            offer = Offer(
                offer_id=uuid.uuid4().hex,
                application_id=investor.application_id,
                staff_id=witness.staff_id,
                expires_at=now + cfg.offer_timeout_seconds,
            )
            if not await backend.claim(offer, now=now):
                continue  # someone else moved first; the next round sees the new state
            made += 1
            async with self.pairing.db.begin() as tx:
                summary = await offer_summary(tx, investor.application_id, self.protector)
                await append_audit(
                    tx,
                    actor="system",
                    action="pairing.offered",
                    subject_type="application",
                    subject_id=investor.application_id,
                    details={"staff_id": witness.staff_id, "offer": offer.offer_id},
                )
            await backend.publish(
                witness_channel(witness.staff_id),
                {
                    "type": "offer",
                    "offer_id": offer.offer_id,
                    "expires_in": cfg.offer_timeout_seconds,
                    "application": summary,
                },
            )
        return made

    async def _abort_for(self, application_id: str, reason: str) -> None:
        async with self.pairing.db.begin() as tx:
            ids = (
                await tx.scalars(
                    select(WitnessSession.id).where(
                        WitnessSession.application_id == application_id,
                        WitnessSession.state.in_((SessionState.PLACED, SessionState.LIVE)),
                    )
                )
            ).all()
        for session_id in ids:
            await self.placer.abort(session_id, reason=reason, left_role="witness")

    async def _audit(
        self, action: str, subject_type: str, subject_id: str, details: dict[str, str]
    ) -> None:
        async with self.pairing.db.begin() as tx:
            await append_audit(
                tx,
                actor="system",
                action=action,
                subject_type=subject_type,
                subject_id=subject_id,
                details=details,
            )

    # -- the loop -----------------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Finish the current round and return: cancelling a round mid-transaction can
        leave asyncpg's connection close hanging (seen on shutdown), so we never do."""
        self._stopping = True
        self._wake.set()

    async def heartbeat(self) -> None:
        load = self._live_sessions() if self._live_sessions else 0
        node = replace(self.node, load=load, last_seen=time.time())
        await self.pairing.backend.register_node(node, ttl=self.pairing.config.node_ttl_seconds)

    async def run_forever(self) -> None:
        backend, cfg = self.pairing.backend, self.pairing.config
        listener = asyncio.create_task(self._listen())
        last_beat = 0.0
        try:
            while not self._stopping:
                try:
                    if time.time() - last_beat >= cfg.node_ttl_seconds / 3:
                        await self.heartbeat()
                        last_beat = time.time()
                    lease = max(cfg.dispatch_interval_seconds * 5, 5.0)
                    if await backend.acquire_lock(LOCK_NAME, self.owner, ttl=lease):
                        await self.run_once()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("dispatcher round failed")
                # Not asyncio.wait_for: on 3.11 it can swallow a cancellation that lands
                # as the event fires, and this loop would then never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(cfg.dispatch_interval_seconds):
                        await self._wake.wait()
                self._wake.clear()
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener
            with contextlib.suppress(Exception):
                await backend.release_lock(LOCK_NAME, self.owner)

    async def _listen(self) -> None:
        """Wake on queue changes published by any node."""
        while True:
            try:
                async with await self.pairing.backend.subscribe(QUEUE_CHANGED) as sub:
                    async for _channel, _message in sub:
                        self.wake()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("queue-change subscription lost; resubscribing")
                await asyncio.sleep(1)
