"""SQLite's one write lock: a writer kept waiting behind it names the task holding it and
where that task is, so a transaction left open across an unrelated await shows itself
(two engines on one file, as two nodes or the CLI beside a server would be)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from server.store import db as store_db
from server.store.db import make_engine, make_sessionmaker


async def test_a_writer_kept_waiting_names_the_holder_and_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(store_db, "SLOW_LOCK_SECONDS", 0.3)
    url = f"sqlite+aiosqlite:///{tmp_path / 'lock.db'}"
    first, second = make_engine(url), make_engine(url)
    try:
        async with make_sessionmaker(first).begin() as tx:
            await tx.execute(text("CREATE TABLE t (x INTEGER)"))
        holding = asyncio.Event()

        async def slow_holder() -> None:
            async with make_sessionmaker(first).begin() as tx:
                await tx.execute(text("INSERT INTO t VALUES (1)"))
                holding.set()
                await asyncio.sleep(0.8)  # an unrelated await inside the transaction

        holder = asyncio.create_task(slow_holder(), name="slow-holder")
        await holding.wait()
        with caplog.at_level(logging.WARNING, logger="server.store.db"):
            async with make_sessionmaker(second).begin() as tx:
                await tx.execute(text("INSERT INTO t VALUES (2)"))
            await holder
        waited = [r.getMessage() for r in caplog.records if "has waited" in r.getMessage()]
        assert len(waited) == 1, caplog.text
        assert "task 'slow-holder' has held it" in waited[0]
        assert "in slow_holder" in waited[0] and "asyncio.sleep(0.8)" in waited[0]
        held = [r.getMessage() for r in caplog.records if "held 0." in r.getMessage()]
        assert held and "slow-holder" in held[0]
        async with make_sessionmaker(second).begin() as tx:
            assert (await tx.execute(text("SELECT count(*) FROM t"))).scalar() == 2
    finally:
        await first.dispose()
        await second.dispose()


async def test_a_short_wait_says_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(store_db, "SLOW_LOCK_SECONDS", 0.5)
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'quiet.db'}")
    try:
        sessions = make_sessionmaker(engine)
        async with sessions.begin() as tx:
            await tx.execute(text("CREATE TABLE t (x INTEGER)"))

        async def write(n: int) -> None:
            async with sessions.begin() as tx:
                await tx.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
                await asyncio.sleep(0.01)

        with caplog.at_level(logging.WARNING, logger="server.store.db"):
            await asyncio.gather(*(write(n) for n in range(5)))
        assert "SQLite write lock" not in caplog.text
    finally:
        await engine.dispose()


async def test_a_blocked_event_loop_is_told_apart_from_a_lock_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A loop blocked past the report's time fires the report late: the wait it would
    describe may be long over, so it says the loop was blocked instead."""
    monkeypatch.setattr(store_db, "SLOW_LOCK_SECONDS", 0.2)
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'blocked.db'}")
    try:
        sessions = make_sessionmaker(engine)
        async with sessions.begin() as tx:
            await tx.execute(text("CREATE TABLE t (x INTEGER)"))
        holding = asyncio.Event()

        async def blocking_holder() -> None:
            async with sessions.begin() as tx:
                await tx.execute(text("INSERT INTO t VALUES (1)"))
                holding.set()
                await asyncio.sleep(0.05)  # the waiter starts its BEGIN
                time.sleep(1.5)  # noqa: ASYNC251 - the point: the loop itself is stuck

        holder = asyncio.create_task(blocking_holder())
        await holding.wait()
        with caplog.at_level(logging.WARNING, logger="server.store.db"):
            async with sessions.begin() as tx:
                await tx.execute(text("INSERT INTO t VALUES (2)"))
            await holder
        assert "the event loop was blocked" in caplog.text
        assert "has waited" not in caplog.text
    finally:
        await engine.dispose()
