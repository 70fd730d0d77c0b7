"""Hash-chained audit log (A15, A25): append inside the caller's transaction, verify.

Appends are serialised so two writers can never both extend the same chain head:
PostgreSQL takes a transaction-scoped advisory lock; SQLite transactions already hold
the database write lock from BEGIN IMMEDIATE (see store/db.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from server.domain.audit_chain import (
    GENESIS_HASH,
    AuditRecord,
    ChainBreak,
    canonical_payload,
    entry_hash,
    verify_chain,
)
from server.store.models import AuditEntry, utcnow

_PG_AUDIT_LOCK = 0x5749_544E  # "WITN": an arbitrary, fixed advisory-lock key


async def append_audit(
    tx: AsyncSession,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str | int,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add one entry to the chain in the session's current transaction.

    ``details`` must hold JSON scalars, lists and dicts only (no floats that would not
    round-trip) and never personal data in clear.
    """
    if tx.bind is not None and tx.bind.dialect.name == "postgresql":
        await tx.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_AUDIT_LOCK})
    last = (
        await tx.execute(
            select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
        )
    ).first()
    seq = 1 if last is None else last.seq + 1
    prev = GENESIS_HASH if last is None else last.hash
    at = utcnow()
    body = details or {}
    payload = canonical_payload(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        details=body,
    )
    entry = AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        details=body,
        prev_hash=prev,
        hash=entry_hash(prev, payload),
    )
    tx.add(entry)
    await tx.flush()
    return entry


def to_record(row: AuditEntry) -> AuditRecord:
    return AuditRecord(
        seq=row.seq,
        at=row.at,
        actor=row.actor,
        action=row.action,
        subject_type=row.subject_type,
        subject_id=row.subject_id,
        details=row.details,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


@dataclass(frozen=True)
class ChainReport:
    checked: int
    first_break: ChainBreak | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


async def verify_audit_chain(tx: AsyncSession, *, batch: int = 1000) -> ChainReport:
    """Walk the whole chain in batches (bounded memory); report the first broken link."""
    prev, next_seq, checked = GENESIS_HASH, 1, 0
    while True:
        rows = (
            await tx.scalars(
                select(AuditEntry)
                .where(AuditEntry.seq >= next_seq)
                .order_by(AuditEntry.seq)
                .limit(batch)
            )
        ).all()
        if not rows:
            return ChainReport(checked, None)
        count, broken = verify_chain(
            (to_record(r) for r in rows), start_prev=prev, start_seq=next_seq
        )
        checked += count
        if broken is not None:
            return ChainReport(checked, broken)
        prev, next_seq = rows[-1].hash, rows[-1].seq + 1
