"""A staff member's login session as every staff request checks it (services.login_sessions).

The check is a read unless the session is to be ended or marked as seen (issue 21): these
tests hold the database's write lock while a fresh session is checked, and see what each
kind of session does to its row.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.config import SecurityConfig
from server.services.login_sessions import open_session, staff_for_token
from server.store.models import Staff, StaffSession, utcnow

SECURITY = SecurityConfig()


async def _signed_in(db: async_sessionmaker[AsyncSession], *, seen_ago: timedelta) -> str:
    async with db.begin() as tx:
        staff = Staff(
            username="desk1", display_name="Desk One", password_hash="x", roles="reviewer"
        )
        tx.add(staff)
        await tx.flush()
        token = await open_session(tx=tx, staff=staff, security=SECURITY, ip="::1", user_agent="t")
    async with db.begin() as tx:
        row = await tx.scalar(select(StaffSession))
        assert row is not None
        row.last_seen_at = utcnow() - seen_ago
    return token


async def _row(db: async_sessionmaker[AsyncSession]) -> StaffSession | None:
    async with db() as tx:
        return await tx.scalar(select(StaffSession))


async def test_a_session_seen_within_the_minute_is_checked_beside_a_writer(
    db: async_sessionmaker[AsyncSession], db_url: str
) -> None:
    token = await _signed_in(db, seen_ago=timedelta(seconds=5))
    before = await _row(db)
    assert before is not None
    holding, release = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with db.begin() as tx:
            row = await tx.scalar(select(StaffSession).with_for_update())
            assert row is not None
            row.user_agent = "held"
            await tx.flush()
            holding.set()
            await release.wait()

    task = asyncio.create_task(writer())
    await holding.wait()
    try:
        # On SQLite a write transaction would wait for the holder (30 s busy timeout); on
        # PostgreSQL the row lock would. A read answers at once from the last commit.
        async with asyncio.timeout(2):
            current = await staff_for_token(db, token, SECURITY)
        assert current is not None and current.username == "desk1"
    finally:
        release.set()
        await task
    after = await _row(db)
    assert after is not None and after.last_seen_at == before.last_seen_at  # nothing written


async def test_a_session_not_seen_for_a_minute_is_marked_seen(
    db: async_sessionmaker[AsyncSession],
) -> None:
    token = await _signed_in(db, seen_ago=timedelta(minutes=2))
    before = await _row(db)
    current = await staff_for_token(db, token, SECURITY)
    assert current is not None
    after = await _row(db)
    assert before is not None and after is not None
    assert after.last_seen_at - before.last_seen_at >= timedelta(minutes=2) - timedelta(seconds=5)


async def test_an_idle_session_ends_and_its_row_is_deleted(
    db: async_sessionmaker[AsyncSession],
) -> None:
    token = await _signed_in(db, seen_ago=timedelta(minutes=SECURITY.session_idle_minutes + 1))
    assert await staff_for_token(db, token, SECURITY) is None
    assert await _row(db) is None


async def test_a_disabled_persons_session_ends(db: async_sessionmaker[AsyncSession]) -> None:
    token = await _signed_in(db, seen_ago=timedelta(seconds=5))
    async with db.begin() as tx:
        staff = await tx.scalar(select(Staff))
        assert staff is not None
        staff.active = False
    assert await staff_for_token(db, token, SECURITY) is None
    assert await _row(db) is None


async def test_unknown_and_oversized_tokens_are_nobody(
    db: async_sessionmaker[AsyncSession],
) -> None:
    await _signed_in(db, seen_ago=timedelta(seconds=5))
    assert await staff_for_token(db, "not-a-token", SECURITY) is None
    assert await staff_for_token(db, "x" * 101, SECURITY) is None
    assert await _row(db) is not None
