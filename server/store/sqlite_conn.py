"""aiosqlite connections that never leave SQLite's write lock behind when they close.

sqlite3's ``close()`` on a connection whose cursor still holds a prepared statement (a
task cancelled mid-query: its cursor lives on in the cancelled task's traceback, a
reference cycle, until the garbage collector runs) does not end the connection: SQLite
keeps it as a "zombie" with its transaction open, and so the write lock, until that
statement is finalized. Every writer then waits for the garbage collector, up to
``busy_timeout`` (30 s), and fails with "database is locked" (seen in the test suite:
a request handler cancelled when its client went away; reproduced and measured in
tests/integration/test_sqlite_write_lock.py). A ROLLBACK queued before the close ends the
transaction whatever is still referenced (SQLite aborts the pending statements).
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from typing import Any

import aiosqlite

# What SQLAlchemy's aiosqlite dialect passes for a file database, plus our busy timeout.
CONNECT_ARGS: dict[str, Any] = {"check_same_thread": False, "timeout": 30}


class RollbackFirst(aiosqlite.Connection):
    """aiosqlite's connection, rolled back just before it closes (see the module)."""

    async def close(self) -> None:
        self._roll_back_queued()
        await super().close()

    def stop(self) -> asyncio.Future[Any] | None:
        # SQLAlchemy's terminate (a connection invalidated while cancelled) ends here.
        self._roll_back_queued()
        return super().stop()

    def __del__(self) -> None:
        # SQLAlchemy's async pool cannot await a close from the garbage collector, so a
        # connection whose checkout was abandoned (a task cancelled at shutdown) is only
        # dropped. aiosqlite's own __del__ then stops the thread too, but first raises a
        # ResourceWarning that surfaces in whatever unrelated code the collector happens
        # to interrupt (a failure in the test suite, where warnings are errors). Ending
        # it here is the same cleanup, rolled back first, and quiet.
        if self._connection is not None and self._running:
            self.stop()

    def _roll_back_queued(self) -> None:
        conn = self._connection
        if conn is not None and self._running:
            # Queued, not awaited: it runs in the connection's thread just before the
            # close queued next, and a cancellation here cannot skip it.
            self._tx.put_nowait((None, functools.partial(_roll_back, conn)))


def _roll_back(conn: sqlite3.Connection) -> None:
    try:
        conn.rollback()
    except sqlite3.Error:
        pass  # closed already, or nothing to roll back


def creator(path: str) -> Callable[[], RollbackFirst]:
    """An ``async_creator`` for ``create_async_engine``: a file database's connection as
    SQLAlchemy's dialect would open it, but a ``RollbackFirst``."""

    def connect() -> RollbackFirst:
        connection = RollbackFirst(
            functools.partial(sqlite3.connect, path, **CONNECT_ARGS), iter_chunk_size=64
        )
        connection._thread.daemon = True  # as the dialect does: never hold the process up
        return connection

    return connect
