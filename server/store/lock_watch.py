"""Who holds SQLite's one write lock, for a writer kept waiting behind it to name.

A transaction left open across an unrelated await, or a connection whose transaction
outlived what its session saw (a task cancelled mid-transaction), stalls every writer for
up to ``busy_timeout`` (30 s) and is otherwise invisible: "database is locked" says
nothing of who holds it. A writer kept ``SLOW_LOCK_SECONDS`` logs the holder as SQLAlchemy's
events know it, with where that task waits, and every connection on the file that SQLite
itself says is inside a transaction, with the task that last checked it out.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

SLOW_LOCK_SECONDS = 5.0
# A report this late says the event loop was blocked, not that the lock was.
LOOP_BLOCKED_SECONDS = 1.0
# Connections remembered per file (a pool holds at most 15; the rest are closed ones).
MAX_CONNECTIONS = 64


@dataclass
class _Connection:
    # The aiosqlite connection, weakly: held here it would never be collected, and the
    # collector is what closes one SQLAlchemy dropped without closing.
    driver: weakref.ref[Any]
    number: int
    user: weakref.ref[asyncio.Task[Any]] | None = None
    user_name: str = "-"
    out_since: float | None = None  # checked out since (monotonic), None when in the pool


class WriteLockWatch:
    def __init__(self) -> None:
        self.conn: Any = None
        self.task: asyncio.Task[Any] | None = None
        self.since = 0.0
        self.last = ""
        self.released_at = 0.0
        self._connections: dict[int, _Connection] = {}
        self._numbered = 0

    # ── the pool's connections ─────────────────────────────────────────────────────
    def connected(self, dbapi: Any) -> None:
        driver = getattr(dbapi, "_connection", None)  # SQLAlchemy's adapter wraps it
        if driver is None:
            return
        self._numbered += 1
        self._connections[id(dbapi)] = _Connection(weakref.ref(driver), self._numbered)
        if len(self._connections) > MAX_CONNECTIONS:
            oldest = next(iter(self._connections))
            del self._connections[oldest]

    def checked_out(self, dbapi: Any) -> None:
        info = self._connections.get(id(dbapi))
        if info is not None:
            task = current_task()
            info.user = weakref.ref(task) if task is not None else None
            info.user_name = task_name(task)
            info.out_since = time.monotonic()

    def checked_in(self, dbapi: Any) -> None:
        info = self._connections.get(id(dbapi))
        if info is not None:
            info.out_since = None

    def closed(self, dbapi: Any) -> None:
        self._connections.pop(id(dbapi), None)

    # ── the write lock ─────────────────────────────────────────────────────────────
    def waiting(self) -> _Waiting:
        return _Waiting(self)

    def taken(self, conn: Any) -> None:
        self.conn, self.since = conn, time.monotonic()
        self.task = current_task()

    def released(self, conn: Any) -> None:
        if conn is self.conn:
            now = time.monotonic()
            if now - self.since >= SLOW_LOCK_SECONDS:
                log.warning(
                    "SQLite write lock held %.1f s by %s", now - self.since, task_name(self.task)
                )
            self.last = f"{task_name(self.task)}, released {{:.1f}} s ago"
            self.conn, self.task, self.released_at = None, None, now

    def report(self, waiter: asyncio.Task[Any] | None, due: float) -> None:
        now = time.monotonic()
        late = asyncio.get_running_loop().time() - due
        if late > LOOP_BLOCKED_SECONDS:
            # The event loop itself was blocked: the wait may have ended long ago, its
            # answer not yet read. That is the thing to find, not a lock holder.
            log.warning(
                "the event loop was blocked %.1f s; %s's SQLite write-lock wait is unknown",
                late + SLOW_LOCK_SECONDS,
                task_name(waiter),
            )
            return
        if self.conn is not None:
            holder = f"{task_name(self.task)} has held it {now - self.since:.1f} s"
        else:
            # Nobody here, as far as SQLAlchemy's events tell: another process, or a
            # connection whose transaction outlived what its session saw (listed below).
            last = self.last.format(now - self.released_at) if self.last else "none"
            holder = f"no holder known to SQLAlchemy (last: {last})"
        log.warning(
            "%s has waited %.0f s for the SQLite write lock; %s.\nHolder:\n%s\n"
            "Connections SQLite says are in a transaction:\n%s\nWaiter:\n%s",
            task_name(waiter),
            SLOW_LOCK_SECONDS,
            holder,
            stack(self.task),
            self._in_transaction(now),
            stack(waiter),
        )

    def _in_transaction(self, now: float) -> str:
        lines = []
        for info in list(self._connections.values()):
            raw = getattr(info.driver(), "_connection", None)  # the sqlite3 connection
            try:
                busy = raw is not None and raw.in_transaction
            except Exception:  # closed meanwhile
                busy = False
            if not busy:
                continue
            where = (
                "in the pool"
                if info.out_since is None
                else f"checked out {now - info.out_since:.1f} s ago"
            )
            user = info.user() if info.user is not None else None
            # A task that finished with its connection still in a transaction: the leak.
            finished = info.user is not None and (user is None or user.done())
            lines.append(
                f"  connection #{info.number}, {where}, last by {info.user_name}"
                + (" (that task has finished)" if finished else "")
            )
            if user is not None and not user.done():
                lines.append(stack(user))
        return "\n".join(lines) or "  none"


class _Waiting:
    def __init__(self, watch: WriteLockWatch) -> None:
        self.watch = watch
        self.handle: asyncio.TimerHandle | None = None

    def __enter__(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a synchronous engine (migrations run in a thread)
            return
        due = loop.time() + SLOW_LOCK_SECONDS
        self.handle = loop.call_at(due, self.watch.report, current_task(), due)

    def __exit__(self, *_exc: object) -> None:
        if self.handle is not None:
            self.handle.cancel()


_WATCHES: weakref.WeakValueDictionary[str, WriteLockWatch] = weakref.WeakValueDictionary()


def watch_for(path: str) -> WriteLockWatch:
    """One watch per file, shared by every engine on it in this process (two nodes in one
    test, the CLI beside a server). The engine's listeners keep it alive."""
    watch = _WATCHES.get(path)
    if watch is None:
        watch = _WATCHES[path] = WriteLockWatch()
    return watch


def current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def stack(task: asyncio.Task[Any] | None) -> str:
    if task is None:
        return "  -"
    out = io.StringIO()
    task.print_stack(file=out)
    return out.getvalue()


def task_name(task: asyncio.Task[Any] | None) -> str:
    return "an unknown caller" if task is None else f"task {task.get_name()!r}"
