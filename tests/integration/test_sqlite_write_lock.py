"""SQLite's one write lock: a writer kept waiting behind it names the task holding it and
where that task is, so a transaction left open across an unrelated await shows itself
(two engines on one file, as two nodes or the CLI beside a server would be)."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from server.store import lock_watch, sqlite_conn
from server.store.db import make_engine, make_sessionmaker, reading
from server.store.models import Staff


async def test_a_writer_kept_waiting_names_the_holder_and_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(lock_watch, "SLOW_LOCK_SECONDS", 0.3)
    url = f"sqlite+aiosqlite:///{tmp_path / 'lock.db'}"
    first, second = make_engine(url), make_engine(url)
    try:
        async with make_sessionmaker(first).begin() as tx:
            await tx.execute(text("CREATE TABLE t (x INTEGER)"))
        holding, release = asyncio.Event(), asyncio.Event()

        async def slow_holder() -> None:
            async with make_sessionmaker(first).begin() as tx:
                await tx.execute(text("INSERT INTO t VALUES (1)"))
                holding.set()
                await release.wait()  # an unrelated await inside the transaction

        async def writer() -> None:
            async with make_sessionmaker(second).begin() as tx:
                await tx.execute(text("INSERT INTO t VALUES (2)"))

        def reports() -> list[str]:
            return [r.getMessage() for r in caplog.records if "has waited" in r.getMessage()]

        holder = asyncio.create_task(slow_holder(), name="slow-holder")
        await holding.wait()
        with caplog.at_level(logging.WARNING, logger="server.store.db"):
            waiting = asyncio.create_task(writer())
            # The holder lets go only once the report is out (a loaded machine's loop
            # may be late, never the report's content).
            for _ in range(200):
                if reports():
                    break
                await asyncio.sleep(0.05)
            release.set()
            await asyncio.gather(holder, waiting)
        assert len(reports()) == 1, caplog.text
        report = reports()[0]
        assert "task 'slow-holder' has held it" in report, report
        assert "in slow_holder" in report and "release.wait()" in report, report
        assert "SQLite write lock held" in caplog.text and "by task 'slow-holder'" in caplog.text
        async with make_sessionmaker(second).begin() as tx:
            assert (await tx.execute(text("SELECT count(*) FROM t"))).scalar() == 2
    finally:
        await first.dispose()
        await second.dispose()


async def test_a_short_wait_says_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(lock_watch, "SLOW_LOCK_SECONDS", 0.5)
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
    monkeypatch.setattr(lock_watch, "SLOW_LOCK_SECONDS", 0.2)
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


async def test_a_transaction_sqlalchemy_does_not_know_of_is_found_on_its_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The lock held by a connection whose transaction outlived its session (begun at the
    driver, as a cancelled task can leave one): the report names that connection and the
    task that last checked it out."""
    monkeypatch.setattr(lock_watch, "SLOW_LOCK_SECONDS", 0.3)
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'leak.db'}")
    try:
        async with make_sessionmaker(engine).begin() as tx:
            await tx.execute(text("CREATE TABLE t (x INTEGER)"))

        async def leaker() -> Any:
            conn = await engine.connect()  # checked out, and left so
            driver = (await conn.get_raw_connection()).driver_connection
            await driver.execute("BEGIN IMMEDIATE")  # under SQLAlchemy's feet
            await driver.execute("INSERT INTO t VALUES (1)")
            return conn, driver

        conn, driver = await asyncio.create_task(leaker(), name="the-leaker")
        with caplog.at_level(logging.WARNING, logger="server.store.lock_watch"):
            writer = asyncio.create_task(_insert(engine, 2))
            for _ in range(100):
                if "has waited" in caplog.text:
                    break
                await asyncio.sleep(0.05)
            await driver.rollback()
            await conn.close()
            await writer
        assert "no holder known to SQLAlchemy" in caplog.text, caplog.text
        assert "checked out" in caplog.text
        assert "last by task 'the-leaker' (that task has finished)" in caplog.text
    finally:
        await engine.dispose()


async def _insert(engine: Any, n: int) -> None:
    async with make_sessionmaker(engine).begin() as tx:
        await tx.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})


async def test_closing_a_connection_with_a_live_cursor_does_not_keep_the_lock(
    tmp_path: Path,
) -> None:
    """A connection closed in a transaction while a cursor of it is still referenced (a
    task cancelled mid-query keeps its cursor in its traceback until the garbage
    collector runs) must not keep the write lock: SQLite keeps such a connection as a
    zombie with its transaction open. Before server/store/sqlite_conn.py a writer waited
    here for the whole busy timeout."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'zombie.db'}")
    try:
        async with make_sessionmaker(engine).begin() as tx:
            await tx.execute(text("CREATE TABLE t (x INTEGER)"))
            for n in range(3):
                await tx.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
        conn = await engine.connect()
        driver = (await conn.get_raw_connection()).driver_connection
        await driver.execute("BEGIN IMMEDIATE")
        await driver.execute("INSERT INTO t VALUES (9)")
        cursor = await driver.execute("SELECT x FROM t")  # a statement left mid-way
        assert await cursor.fetchone() is not None
        await conn.invalidate()  # closed as SQLAlchemy closes one a cancellation broke
        async with asyncio.timeout(3):
            await _insert(engine, 4)
        async with make_sessionmaker(engine).begin() as tx:
            rows = (await tx.execute(text("SELECT x FROM t ORDER BY x"))).scalars().all()
        assert rows == [0, 1, 2, 4]  # the closed connection's write rolled back
        del cursor
    finally:
        await engine.dispose()


async def test_a_connection_dropped_unclosed_ends_quietly_and_frees_the_lock(
    tmp_path: Path,
) -> None:
    """SQLAlchemy's async pool only drops a connection whose checkout was abandoned; the
    garbage collector then finalizes it wherever it runs. That must neither warn there
    (aiosqlite's own finalizer raises a ResourceWarning, which failed an unrelated
    PostgreSQL test in CI) nor leave its transaction holding the write lock."""
    connect = sqlite_conn.creator(str(tmp_path / "dropped.db"))
    setup = await connect()
    await setup.execute("CREATE TABLE t (x INTEGER)")
    await setup.commit()
    await setup.close()

    dropped = await connect()
    await dropped.execute("BEGIN IMMEDIATE")
    await dropped.execute("INSERT INTO t VALUES (9)")
    thread = dropped._thread
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del dropped
        gc.collect()
    assert [str(w.message) for w in caught] == []
    await asyncio.to_thread(thread.join, 5)
    assert not thread.is_alive()  # closed in its own thread, not left running

    other = await connect()
    try:
        await other.execute("PRAGMA busy_timeout = 500")
        await other.execute("INSERT INTO t VALUES (1)")  # not "database is locked"
        await other.commit()
        async with other.execute("SELECT x FROM t") as cursor:
            assert [row[0] for row in await cursor.fetchall()] == [1]
    finally:
        await other.close()


async def test_writers_of_one_process_take_the_lock_in_the_order_they_asked(
    tmp_path: Path,
) -> None:
    """Issue 21: SQLite's busy handler lets a writer that comes while the lock is free
    overtake one that has slept through several holders (a party's recording row waited
    5.4 s at 24 sessions). One engine's writers now queue in order, and the one queued
    first is never overtaken by later ones, however many come."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'fifo.db'}")
    try:
        sessions = make_sessionmaker(engine)
        other_factory = make_sessionmaker(engine)  # same engine: the same queue
        async with sessions.begin() as tx:
            await tx.execute(text("CREATE TABLE t (n INTEGER)"))
        release = asyncio.Event()
        order: list[int] = []

        async def holder() -> None:
            async with sessions.begin() as tx:
                await tx.execute(text("INSERT INTO t VALUES (-1)"))
                await release.wait()

        async def writer(n: int) -> None:
            factory = sessions if n % 2 else other_factory
            async with factory.begin() as tx:
                order.append(n)
                await tx.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
                await asyncio.sleep(0.01)  # a short holder, as most are

        held = asyncio.create_task(holder())
        await asyncio.sleep(0.1)
        writers = []
        for n in range(12):
            writers.append(asyncio.create_task(writer(n)))
            await asyncio.sleep(0.02)  # each asks a little after the one before
        release.set()
        await asyncio.wait_for(asyncio.gather(held, *writers), 10)
        assert order == list(range(12))
        async with sessions.begin() as tx:
            stored = (await tx.execute(text("SELECT n FROM t ORDER BY rowid"))).scalars().all()
        assert stored == [-1, *range(12)]
    finally:
        await engine.dispose()


async def test_a_read_does_not_queue_behind_writers_and_cannot_write(tmp_path: Path) -> None:
    """reading(): the last commit, at once, while a writer holds the lock and others
    queue; and a write inside it is refused, not rolled back unseen."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'read.db'}")
    try:
        sessions = make_sessionmaker(engine)
        async with sessions.begin() as tx:
            await tx.execute(text("CREATE TABLE t (n INTEGER)"))
            await tx.execute(text("INSERT INTO t VALUES (1)"))
        release = asyncio.Event()
        holding = asyncio.Event()

        async def holder() -> None:
            async with sessions.begin() as tx:
                await tx.execute(text("INSERT INTO t VALUES (2)"))
                holding.set()
                await release.wait()

        async def queued() -> None:
            async with sessions.begin() as tx:
                await tx.execute(text("INSERT INTO t VALUES (3)"))

        tasks = [asyncio.create_task(holder())]
        await holding.wait()
        tasks.append(asyncio.create_task(queued()))
        await asyncio.sleep(0.05)
        async with asyncio.timeout(2):
            async with reading(sessions) as tx:
                seen = (await tx.execute(text("SELECT n FROM t ORDER BY n"))).scalars().all()
        assert seen == [1]  # the last commit, not the holder's pending row
        assert not tasks[1].done()  # the writer behind the holder still waits its turn
        with pytest.raises(RuntimeError, match="a write inside reading"):
            async with reading(sessions) as tx:
                tx.add(Staff(username="x", display_name="x", password_hash="x"))
                await tx.flush()
        release.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        async with reading(sessions) as tx:
            seen = (await tx.execute(text("SELECT n FROM t ORDER BY n"))).scalars().all()
        assert seen == [1, 2, 3]
    finally:
        await engine.dispose()
