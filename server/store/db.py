"""Async engine and session factory, the same code for SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import logging
import time
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = logging.getLogger(__name__)

# Execution option for connections that never write (SQLite: no BEGIN IMMEDIATE).
READ_ONLY = "witness_read_only"

# A writer kept this long behind SQLite's one write lock says who holds it and where that
# task is waiting: a transaction left open across an unrelated await stalls every writer
# for up to busy_timeout (30 s), and is otherwise invisible.
SLOW_LOCK_SECONDS = 5.0


def make_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine, path)
        return engine
    return create_async_engine(url, echo=echo, pool_size=pool_size, pool_pre_ping=True)


def _configure_sqlite(engine: AsyncEngine, path: str) -> None:
    # pysqlite's own transaction handling starts transactions lazily, which lets two
    # writers read the same audit chain head; take over and BEGIN IMMEDIATE instead, so
    # every transaction holds the write lock from its start (SQLAlchemy's documented recipe).
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    # One watch per file, shared by every engine on it in this process (two nodes in one
    # test, the CLI beside a server), so a writer kept waiting can name any holder here.
    # The listeners below hold it as long as the engine lives.
    watch = _WATCHES.get(path)
    if watch is None:
        watch = _WATCHES[path] = _WriteLockWatch()

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


class _WriteLockWatch:
    """Which task holds an engine's SQLite write lock, for a writer kept waiting to name."""

    def __init__(self) -> None:
        self.conn: Any = None
        self.task: asyncio.Task[Any] | None = None
        self.since = 0.0
        self.last = ""
        self.released_at = 0.0

    def waiting(self) -> _Waiting:
        return _Waiting(self)

    def taken(self, conn: Any) -> None:
        self.conn, self.since = conn, time.monotonic()
        self.task = _current_task()

    def released(self, conn: Any) -> None:
        if conn is self.conn:
            now = time.monotonic()
            if now - self.since >= SLOW_LOCK_SECONDS:
                log.warning(
                    "SQLite write lock held %.1f s by %s", now - self.since, _task_name(self.task)
                )
            self.last = f"{_task_name(self.task)}, released {{:.1f}} s ago"
            self.conn, self.task, self.released_at = None, None, now

    def report(self, waiter: asyncio.Task[Any] | None, due: float) -> None:
        now = time.monotonic()
        late = asyncio.get_running_loop().time() - due
        if late > 1.0:
            # The event loop itself was blocked: the wait may have ended long ago, its
            # answer not yet read. That is the thing to find, not a lock holder.
            log.warning(
                "the event loop was blocked %.1f s; %s's SQLite write-lock wait is unknown",
                late + SLOW_LOCK_SECONDS,
                _task_name(waiter),
            )
            return
        if self.conn is not None:
            holder = f"{_task_name(self.task)} has held it {now - self.since:.1f} s"
        else:
            # Nobody here, as far as SQLAlchemy's events tell: another process, or a
            # connection whose transaction outlived what its session saw.
            last = self.last.format(now - self.released_at) if self.last else "none"
            holder = f"no holder known in this process (last: {last})"
        log.warning(
            "%s has waited %.0f s for the SQLite write lock; %s.\nHolder:\n%s\nWaiter:\n%s",
            _task_name(waiter),
            SLOW_LOCK_SECONDS,
            holder,
            _stack(self.task),
            _stack(waiter),
        )


class _Waiting:
    def __init__(self, watch: _WriteLockWatch) -> None:
        self.watch = watch
        self.handle: asyncio.TimerHandle | None = None

    def __enter__(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a synchronous engine (migrations run in a thread)
            return
        due = loop.time() + SLOW_LOCK_SECONDS
        self.handle = loop.call_at(due, self.watch.report, _current_task(), due)

    def __exit__(self, *_exc: object) -> None:
        if self.handle is not None:
            self.handle.cancel()


_WATCHES: weakref.WeakValueDictionary[str, _WriteLockWatch] = weakref.WeakValueDictionary()


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _stack(task: asyncio.Task[Any] | None) -> str:
    if task is None:
        return "  -"
    out = io.StringIO()
    task.print_stack(file=out)
    return out.getvalue()


def _task_name(task: asyncio.Task[Any] | None) -> str:
    return "an unknown caller" if task is None else f"task {task.get_name()!r}"


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
