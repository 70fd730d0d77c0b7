"""Data layer on SQLite and PostgreSQL alike: migrations, audit chain, transitions, staff."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from server.audit import append_audit, verify_audit_chain
from server.crypto import DataProtector
from server.domain.application import ApplicationEvent, ApplicationState, IllegalTransition
from server.services import applications
from server.store import migrate
from server.store.db import make_engine
from server.store.models import Application, AuditEntry

PROTECTOR = DataProtector(b"k" * 32)
EXPECTED_TABLES = {
    "staff",
    "staff_sessions",
    "applications",
    "documents",
    "identity_checks",
    "witness_sessions",
    "session_events",
    "recordings",
    "reviews",
    "callbacks",
    "accounts",
    "notifications",
    "audit_entries",
}


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


@pytest.mark.parametrize("empty_db_url", ["sqlite", "postgres"], indirect=True)
async def test_migrations_up_down_up(empty_db_url: str) -> None:
    eng = make_engine(empty_db_url)
    try:
        assert await migrate.current_revision(eng) is None
        await migrate.upgrade(eng)
        assert await migrate.current_revision(eng) == migrate.head_revision()
        assert EXPECTED_TABLES <= await _tables(eng)
        await migrate.downgrade(eng, "base")
        assert await migrate.current_revision(eng) is None
        assert not (EXPECTED_TABLES & await _tables(eng))
        await migrate.upgrade(eng)
        assert EXPECTED_TABLES <= await _tables(eng)
    finally:
        await eng.dispose()


async def test_audit_chain_appends_and_verifies(db: async_sessionmaker[AsyncSession]) -> None:
    async with db.begin() as s:
        for i in range(5):
            await append_audit(
                s, actor="t", action="x", subject_type="test", subject_id=i, details={"i": i}
            )
    async with db.begin() as s:
        report = await verify_audit_chain(s, batch=2)  # crosses batch boundaries
    assert report.intact and report.checked == 5


async def test_a15_audit_rows_cannot_be_updated_or_deleted(
    engine: AsyncEngine, db: async_sessionmaker[AsyncSession]
) -> None:
    async with db.begin() as s:
        await append_audit(s, actor="t", action="x", subject_type="test", subject_id=1)
    for statement in (
        "UPDATE audit_entries SET actor = 'mallory'",
        "DELETE FROM audit_entries",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement))
    async with db.begin() as s:
        assert (await s.scalar(select(func.count()).select_from(AuditEntry))) == 1


async def _drop_append_only_triggers(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            await conn.execute(text("DROP TRIGGER audit_entries_no_change ON audit_entries"))
        else:
            await conn.execute(text("DROP TRIGGER audit_entries_no_update"))


async def test_a15_hand_altered_row_is_detected(
    engine: AsyncEngine, db: async_sessionmaker[AsyncSession]
) -> None:
    async with db.begin() as s:
        for i in range(4):
            await append_audit(s, actor="t", action="x", subject_type="test", subject_id=i)
    # Someone with database access bypasses the triggers and edits history.
    await _drop_append_only_triggers(engine)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE audit_entries SET actor = 'mallory' WHERE seq = 3"))
    async with db.begin() as s:
        report = await verify_audit_chain(s)
    assert not report.intact
    assert report.first_break is not None and report.first_break.seq == 3
    assert report.checked == 2


async def test_concurrent_appends_keep_one_chain(db: async_sessionmaker[AsyncSession]) -> None:
    async def writer(n: int) -> None:
        async with db.begin() as s:
            await append_audit(s, actor=f"w{n}", action="x", subject_type="test", subject_id=n)
            await asyncio.sleep(0.01)  # widen the window in which a fork could happen

    await asyncio.gather(*(writer(n) for n in range(12)))
    async with db.begin() as s:
        report = await verify_audit_chain(s)
    assert report.intact and report.checked == 12


async def test_transition_persisted_with_audit_entry(db: async_sessionmaker[AsyncSession]) -> None:
    async with db.begin() as s:
        app = await applications.create_application(
            tx=s, phone="13800138000", protector=PROTECTOR, actor="investor"
        )
        app_id = app.id
    async with db.begin() as s:
        app = await applications.get_application(tx=s, application_id=app_id)
        await applications.apply_event(
            tx=s, application=app, event=ApplicationEvent.SUBMIT, actor="investor"
        )
    async with db.begin() as s:
        stored = await s.get(Application, app_id)
        assert stored is not None and stored.state == "submitted"
        assert PROTECTOR.decrypt(stored.phone_enc, context="applications.phone") == "13800138000"
        entries = (
            await s.scalars(
                select(AuditEntry).where(AuditEntry.subject_id == app_id).order_by(AuditEntry.seq)
            )
        ).all()
        assert [e.action for e in entries] == ["application.create", "application.submit"]
        assert entries[1].details == {"from": "draft", "to": "submitted"}


async def test_failed_transaction_leaves_state_and_audit_unchanged(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with db.begin() as s:
        app = await applications.create_application(
            tx=s, phone="13800138001", protector=PROTECTOR, actor="investor"
        )
        app_id = app.id
    with pytest.raises(RuntimeError):
        async with db.begin() as s:
            app = await applications.get_application(tx=s, application_id=app_id)
            await applications.apply_event(
                tx=s, application=app, event=ApplicationEvent.SUBMIT, actor="investor"
            )
            raise RuntimeError("crash after the state change, before commit")
    async with db.begin() as s:
        stored = await s.get(Application, app_id)
        assert stored is not None and stored.state == ApplicationState.DRAFT.value
        count = await s.scalar(select(func.count()).select_from(AuditEntry))
        assert count == 1  # only the creation


async def test_illegal_transition_raises_and_changes_nothing(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with db.begin() as s:
        app = await applications.create_application(
            tx=s, phone="13800138002", protector=PROTECTOR, actor="investor"
        )
        app_id = app.id
    with pytest.raises(IllegalTransition):
        async with db.begin() as s:
            app = await applications.get_application(tx=s, application_id=app_id)
            await applications.apply_event(
                tx=s, application=app, event=ApplicationEvent.APPROVE, actor="reviewer"
            )
    async with db.begin() as s:
        stored = await s.get(Application, app_id)
        assert stored is not None and stored.state == "draft"


async def test_concurrent_state_change_loses_instead_of_overwriting(
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with db.begin() as s:
        app = await applications.create_application(
            tx=s, phone="13800138003", protector=PROTECTOR, actor="investor"
        )
        app_id = app.id
    async with db() as s:
        stale = await s.get(Application, app_id)  # version 1, then detached
    assert stale is not None
    async with db.begin() as s:
        fresh = await applications.get_application(tx=s, application_id=app_id)
        await applications.apply_event(
            tx=s, application=fresh, event=ApplicationEvent.SUBMIT, actor="a"
        )
    # A second writer acting on what it read before must fail, not overwrite.
    with pytest.raises(StaleDataError):
        async with db.begin() as s:
            s.add(stale)
            await applications.apply_event(
                tx=s, application=stale, event=ApplicationEvent.ABANDON, actor="b"
            )
    async with db.begin() as s:
        stored = await s.get(Application, app_id)
        assert stored is not None and stored.state == "submitted"
        count = await s.scalar(select(func.count()).select_from(AuditEntry))
        assert count == 2
