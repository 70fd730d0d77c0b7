"""Hash chain over audit entries (A15, A25): pure hashing and verification.

Each entry's hash is SHA-256 over the previous entry's hash and a canonical JSON of
the entry's own fields, so changing, removing or reordering any stored entry breaks
every link after it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    at: datetime
    actor: str
    action: str
    subject_type: str
    subject_id: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


def _utc_iso(at: datetime) -> str:
    # SQLite hands datetimes back naive; they are stored in UTC everywhere.
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_payload(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str,
    details: dict[str, Any],
) -> bytes:
    body = {
        "seq": seq,
        "at": _utc_iso(at),
        "actor": actor,
        "action": action,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "details": details,
    }
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def entry_hash(prev_hash: str, payload: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + payload).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    reason: str


def verify_chain(
    records: Iterable[AuditRecord],
    *,
    start_prev: str = GENESIS_HASH,
    start_seq: int = 1,
) -> tuple[int, ChainBreak | None]:
    """Walk records in order; return (entries checked, first break or None).

    ``start_prev``/``start_seq`` let a caller verify a long chain batch by batch.
    """
    prev = start_prev
    expected_seq = start_seq
    count = 0
    for rec in records:
        if rec.seq != expected_seq:
            return count, ChainBreak(
                rec.seq, f"sequence gap: expected {expected_seq}, found {rec.seq}"
            )
        if rec.prev_hash != prev:
            return count, ChainBreak(rec.seq, "prev_hash does not match the previous entry's hash")
        payload = canonical_payload(
            seq=rec.seq,
            at=rec.at,
            actor=rec.actor,
            action=rec.action,
            subject_type=rec.subject_type,
            subject_id=rec.subject_id,
            details=rec.details,
        )
        if entry_hash(prev, payload) != rec.hash:
            return count, ChainBreak(rec.seq, "entry content does not match its hash (altered)")
        prev = rec.hash
        expected_seq = rec.seq + 1
        count += 1
    return count, None
