"""Server-side staff login sessions with idle and absolute expiry, and their CSRF token."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import append_audit
from server.config import SecurityConfig
from server.store.db import reading
from server.store.models import Staff, StaffSession, utcnow

# Refreshing last_seen on every request would turn every read into a write.
_TOUCH_EVERY = timedelta(seconds=60)


def _token_id(token: str) -> str:
    # Only the hash is stored: a leaked database does not yield usable cookies.
    return hashlib.sha256(token.encode()).hexdigest()


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class CurrentStaff:
    id: int
    username: str
    display_name: str
    roles: frozenset[str]
    csrf_token: str
    session_id: str


async def open_session(
    *,
    tx: AsyncSession,
    staff: Staff,
    security: SecurityConfig,
    ip: str,
    user_agent: str,
) -> str:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    tx.add(
        StaffSession(
            id=_token_id(token),
            staff_id=staff.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(hours=security.session_max_hours),
            ip=ip[:64],
            user_agent=user_agent[:255],
        )
    )
    await tx.flush()
    return token


def _session_state(
    row: StaffSession, staff: Staff | None, now: datetime, security: SecurityConfig
) -> str:
    """What a request with this session does to it: ``ended`` (delete it), ``touch``
    (record that it was seen) or ``fresh`` (nothing to write)."""
    idle = timedelta(minutes=security.session_idle_minutes)
    if _utc(row.expires_at) <= now or _utc(row.last_seen_at) + idle <= now:
        return "ended"
    if staff is None or not staff.active:
        return "ended"
    return "touch" if now - _utc(row.last_seen_at) >= _TOUCH_EVERY else "fresh"


def _current(row: StaffSession, staff: Staff) -> CurrentStaff:
    return CurrentStaff(
        id=staff.id,
        username=staff.username,
        display_name=staff.display_name,
        roles=staff.role_set,
        csrf_token=row.csrf_token,
        session_id=row.id,
    )


async def resolve_session(
    *, tx: AsyncSession, token: str, security: SecurityConfig
) -> CurrentStaff | None:
    """The logged-in staff member for a cookie token, or None if expired/unknown/disabled."""
    if not token or len(token) > 100:
        return None
    row = await tx.get(StaffSession, _token_id(token))
    if row is None:
        return None
    now = utcnow()
    staff = await tx.get(Staff, row.staff_id)
    state = _session_state(row, staff, now, security)
    if state == "ended" or staff is None:
        await tx.delete(row)
        return None
    if state == "touch":
        row.last_seen_at = now
    return _current(row, staff)


async def staff_for_token(
    db: async_sessionmaker[AsyncSession], token: str, security: SecurityConfig
) -> CurrentStaff | None:
    """``resolve_session`` for the check every staff request passes. Most requests find
    a session seen within the minute: that is a read, and does not queue behind writers
    (store.db.reading; issue 21: the desk's requests took SQLite's write lock 54 times
    while 24 sessions joined, one waiting 1.6 s). Only a session to end or to mark as
    seen takes a write transaction, which decides again on what it reads."""
    if not token or len(token) > 100:
        return None
    async with reading(db) as tx:
        row = await tx.get(StaffSession, _token_id(token))
        if row is None:
            return None
        staff = await tx.get(Staff, row.staff_id)
        if staff is not None and _session_state(row, staff, utcnow(), security) == "fresh":
            return _current(row, staff)
    async with db.begin() as tx:
        return await resolve_session(tx=tx, token=token, security=security)


async def close_session(*, tx: AsyncSession, token: str, actor: str) -> None:
    row = await tx.get(StaffSession, _token_id(token))
    if row is None:
        return
    await tx.delete(row)
    await append_audit(
        tx,
        actor=actor,
        action="auth.logout",
        subject_type="staff",
        subject_id=row.staff_id,
        details={},
    )


async def close_all_for(*, tx: AsyncSession, staff_id: int) -> None:
    """Disabling a person must end their open sessions at once."""
    await tx.execute(delete(StaffSession).where(StaffSession.staff_id == staff_id))


async def count_sessions(*, tx: AsyncSession, staff_id: int) -> int:
    rows = await tx.scalars(select(StaffSession.id).where(StaffSession.staff_id == staff_id))
    return len(rows.all())
