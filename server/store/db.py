"""Async engine and session factory, the same code for SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session

from server.store import lock_watch, sqlite_conn, write_gate

# Execution option for connections that never write (SQLite: no BEGIN IMMEDIATE).
READ_ONLY = "witness_read_only"


def make_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(url, echo=echo, async_creator=sqlite_conn.creator(path))
        else:
            engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine, path)
        return engine
    return create_async_engine(url, echo=echo, pool_size=pool_size, pool_pre_ping=True)


def _configure_sqlite(engine: AsyncEngine, path: str) -> None:
    # pysqlite's own transaction handling starts transactions lazily, which lets two
    # writers read the same audit chain head; take over and BEGIN IMMEDIATE instead, so
    # every transaction holds the write lock from its start (SQLAlchemy's documented recipe).
    # A writer kept waiting says who holds the lock (server/store/lock_watch.py).
    watch = lock_watch.watch_for(path)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        watch.connected(dbapi_connection)
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        watch.checked_out(dbapi_connection)

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(dbapi_connection: Any, _record: Any) -> None:
        watch.checked_in(dbapi_connection)

    @event.listens_for(engine.sync_engine, "close")
    def _on_close(dbapi_connection: Any, _record: Any) -> None:
        watch.closed(dbapi_connection)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A connection that only reads (the health check) must not queue for the write
        # lock behind every writer: WAL lets it read beside them.
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN DEFERRED")
            return
        with watch.waiting():
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        watch.taken(conn)

    @event.listens_for(engine.sync_engine, "commit")
    def _on_commit(conn: Any) -> None:
        watch.released(conn)

    @event.listens_for(engine.sync_engine, "rollback")
    def _on_rollback(conn: Any) -> None:
        watch.released(conn)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    if engine.dialect.name != "sqlite":
        return async_sessionmaker(engine, expire_on_commit=False)
    # SQLite: transactions take the one write lock in the order they asked for it
    # (store/write_gate.py), not by SQLite's sleep-and-retry.
    sessions = write_gate.GatedSessions(engine, expire_on_commit=False)
    sessions.gate = write_gate.gate_for(engine)
    return sessions


def _refuse_writes(_session: Session, _flush: Any, _instances: Any) -> None:
    raise RuntimeError("a write inside reading(): open the transaction with db.begin()")


@contextlib.asynccontextmanager
async def reading(db: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A transaction that only reads, for reads on a busy path (a request's sign-in check,
    a party's answer). On SQLite it begins DEFERRED and does not queue for the write lock
    (store/write_gate.py): WAL lets it read the last commit beside the writer (issue 21:
    at 24 sessions joining, such reads were a third of the lock's queue). It is rolled back
    at the end; anything it would write is refused, never silently dropped."""
    async with db() as session:
        event.listen(session.sync_session, "before_flush", _refuse_writes)
        await session.connection(execution_options={READ_ONLY: True})
        yield session
