"""Retention (A15, A19): evidence is kept at least ``retention.years`` after its session;
nothing deletes it sooner, and a legal hold keeps it regardless of age.

Only ``purge`` deletes, only files past retention and not on hold, and it keeps the
database rows (status ``purged``, hash and sizes stay) and writes each deletion to the
audit chain, so what existed remains provable.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import append_audit
from server.domain.errors import NotFound
from server.domain.recording import FINISHED
from server.store.models import Recording, utcnow


def retention_cutoff(years: int, *, now: datetime | None = None) -> datetime:
    """Calendar years back (29 February falls back to the 28th): never a day early."""
    now = now or datetime.now(UTC)
    try:
        return now.replace(year=now.year - years)
    except ValueError:
        return now.replace(year=now.year - years, day=28)


def _delete_inside(root: Path, relative: str) -> None:
    path = (root / relative).resolve()
    if path.is_relative_to(root.resolve()):
        path.unlink(missing_ok=True)


async def set_hold(tx: AsyncSession, *, recording_id: str, hold: bool, actor: str) -> None:
    rec = await tx.get(Recording, recording_id, with_for_update=True)
    if rec is None:
        raise NotFound("not_found", "No such recording.", "没有该录像。")
    rec.legal_hold = hold
    await append_audit(
        tx,
        actor=actor,
        action="recording.legal_hold" if hold else "recording.legal_hold_released",
        subject_type="recording",
        subject_id=rec.id,
        details={"session": rec.session_id},
    )


@dataclass(frozen=True)
class PurgeReport:
    eligible: list[str]
    purged: list[str]
    held: int


async def purge(
    db: async_sessionmaker[AsyncSession],
    *,
    root: Path,
    years: int,
    dry_run: bool,
    actor: str,
    now: datetime | None = None,
) -> PurgeReport:
    cutoff = retention_cutoff(years, now=now)
    async with db.begin() as tx:
        old = (
            await tx.scalars(
                select(Recording).where(
                    Recording.started_at < cutoff,
                    Recording.status.in_(FINISHED),
                )
            )
        ).all()
        eligible = [r.id for r in old if not r.legal_hold]
        held = sum(1 for r in old if r.legal_hold)
    purged: list[str] = []
    if dry_run:
        return PurgeReport(eligible, purged, held)
    for rec_id in eligible:
        async with db.begin() as tx:
            rec = await tx.get(Recording, rec_id, with_for_update=True)
            # Re-checked under the lock: a hold placed meanwhile wins.
            if rec is None or rec.legal_hold:
                continue
            started = (
                rec.started_at if rec.started_at.tzinfo else rec.started_at.replace(tzinfo=UTC)
            )
            if started >= cutoff:  # SQLite hands datetimes back naive (stored in UTC)
                continue
            rec.status = "purged"
            rec.ended_at = rec.ended_at or utcnow()
            await append_audit(
                tx,
                actor=actor,
                action="recording.purged",
                subject_type="recording",
                subject_id=rec.id,
                details={"session": rec.session_id, "sha256": rec.sha256, "years": years},
            )
            rel_path = rec.path
        # The file goes only once the purge is committed: a failed commit loses nothing.
        await asyncio.to_thread(_delete_inside, root, rel_path)
        purged.append(rec_id)
    return PurgeReport(eligible, purged, held)
