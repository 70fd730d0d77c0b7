"""Hash chain over audit entries (A15, A25): any change, removal or reorder is found."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from server.domain.audit_chain import (
    GENESIS_HASH,
    AuditRecord,
    canonical_payload,
    entry_hash,
    verify_chain,
)

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def build_chain(n: int) -> list[AuditRecord]:
    records, prev = [], GENESIS_HASH
    for i in range(1, n + 1):
        fields = {
            "seq": i,
            "at": T0 + timedelta(seconds=i),
            "actor": f"staff{i % 3}",
            "action": "application.submit",
            "subject_type": "application",
            "subject_id": f"app{i}",
            "details": {"n": i, "名": "值"},
        }
        h = entry_hash(prev, canonical_payload(**fields))  # type: ignore[arg-type]
        records.append(AuditRecord(**fields, prev_hash=prev, hash=h))  # type: ignore[arg-type]
        prev = h
    return records


def test_intact_chain_verifies() -> None:
    chain = build_chain(10)
    assert verify_chain(chain) == (10, None)


def test_altered_detail_is_found_at_that_entry() -> None:
    chain = build_chain(10)
    chain[4] = dataclasses.replace(chain[4], details={"n": 999, "名": "值"})
    checked, brk = verify_chain(chain)
    assert checked == 4 and brk is not None and brk.seq == 5 and "altered" in brk.reason


def test_altered_and_rehashed_entry_breaks_the_next_link() -> None:
    chain = build_chain(6)
    forged = dataclasses.replace(chain[2], actor="mallory")
    payload = canonical_payload(
        seq=forged.seq,
        at=forged.at,
        actor=forged.actor,
        action=forged.action,
        subject_type=forged.subject_type,
        subject_id=forged.subject_id,
        details=forged.details,
    )
    chain[2] = dataclasses.replace(forged, hash=entry_hash(forged.prev_hash, payload))
    _, brk = verify_chain(chain)
    assert brk is not None and brk.seq == 4 and "prev_hash" in brk.reason


def test_removed_entry_is_a_gap() -> None:
    chain = build_chain(5)
    del chain[2]
    _, brk = verify_chain(chain)
    assert brk is not None and brk.seq == 4 and "gap" in brk.reason


def test_removed_first_entry_is_found() -> None:
    _, brk = verify_chain(build_chain(3)[1:])
    assert brk is not None and brk.seq == 2


def test_naive_and_aware_utc_times_hash_alike() -> None:
    # SQLite returns naive datetimes; PostgreSQL aware ones: both must verify.
    aware = canonical_payload(
        seq=1, at=T0, actor="a", action="x", subject_type="s", subject_id="1", details={}
    )
    naive = canonical_payload(
        seq=1,
        at=T0.replace(tzinfo=None),
        actor="a",
        action="x",
        subject_type="s",
        subject_id="1",
        details={},
    )
    assert aware == naive


def test_batches_verify_like_a_whole() -> None:
    chain = build_chain(9)
    n1, b1 = verify_chain(chain[:4])
    n2, b2 = verify_chain(chain[4:], start_prev=chain[3].hash, start_seq=5)
    assert (n1 + n2, b1, b2) == (9, None, None)
