"""Rows for the supervision statistics tests, written straight into the database: two
local days in Shanghai either side of midnight UTC, one witness, one reviewer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.store.models import Application, Callback, Review, Staff, WitnessSession

FIRST_DAY = "2026-03-01"
LAST_DAY = "2026-03-02"
# 23:30 on 1 March in Shanghai, and 00:30 on 2 March.
LATE_FIRST = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)
EARLY_SECOND = datetime(2026, 3, 1, 16, 30, tzinfo=UTC)


async def _staff_id(tx: AsyncSession, username: str) -> int:
    staff_id = await tx.scalar(select(Staff.id).where(Staff.username == username))
    assert staff_id is not None
    return staff_id


async def seed(db: async_sessionmaker[AsyncSession], *, witness: str, reviewer: str) -> None:
    """Day 1: one application, a passed call (wait 40 s, call 300 s). Day 2: two
    applications, a failed call (not_own_will, wait 120 s, call 200 s), a review decided in
    10 minutes, two callbacks of which one reached the investor."""
    async with db.begin() as tx:
        witness_id = await _staff_id(tx, witness)
        reviewer_id = await _staff_id(tx, reviewer)
        apps = [
            Application(state="approved", phone_hash=f"h{n}", phone_enc=b"x", created_at=at)
            for n, at in enumerate([LATE_FIRST, EARLY_SECOND, EARLY_SECOND])
        ]
        tx.add_all(apps)
        await tx.flush()
        calls = [
            (apps[0], LATE_FIRST, 40, 300, "pass", None),
            (apps[1], EARLY_SECOND, 120, 200, "fail", "not_own_will"),
        ]
        sessions = []
        for app, queued, wait_s, call_s, verdict, reason in calls:
            started = queued + timedelta(seconds=wait_s)
            sessions.append(
                WitnessSession(
                    application_id=app.id,
                    witness_id=witness_id,
                    state="ended",
                    verdict=verdict,
                    reason_code=reason,
                    created_at=queued,
                    queued_at=queued,
                    started_at=started,
                    ended_at=started + timedelta(seconds=call_s),
                )
            )
        tx.add_all(sessions)
        await tx.flush()
        claimed = EARLY_SECOND + timedelta(minutes=20)
        tx.add(
            Review(
                application_id=apps[0].id,
                session_id=sessions[0].id,
                reviewer_id=reviewer_id,
                decision="approve",
                created_at=claimed,
                decided_at=claimed + timedelta(minutes=10),
            )
        )
        for minutes, outcome in [(40, "unreachable"), (50, "confirmed")]:
            tx.add(
                Callback(
                    application_id=apps[0].id,
                    staff_id=reviewer_id,
                    outcome=outcome,
                    created_at=EARLY_SECOND + timedelta(minutes=minutes),
                )
            )
