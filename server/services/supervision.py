"""Supervision statistics (A23): load the fact rows of a range of local days, hand them to
the domain's aggregation, and put each read on the audit record.

Read-only over the case tables; the one write is the audit entry, in the same
transaction as the reads. The range is bounded (``domain.supervision.MAX_RANGE_DAYS``), so
one request reads a bounded number of rows. The CSV export is built here too: what a
cell may hold (no formula) is a rule of the export, not of the page.
"""

from __future__ import annotations

import csv
import io
from datetime import date, tzinfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import append_audit
from server.domain.supervision import (
    CallbackFact,
    DayRow,
    Facts,
    Report,
    ReviewFact,
    SessionFact,
    Spread,
    WitnessRow,
    build_report,
    parse_range,
    utc_bounds,
)
from server.store.models import Application, Callback, Review, Staff, WitnessSession, utcnow

VIEWED = "supervision.viewed"
EXPORTED = "supervision.exported"


async def _facts(tx: AsyncSession, *, first_day: date, last_day: date, zone: tzinfo) -> Facts:
    start, end = utc_bounds(first_day, last_day, zone)
    app_times = await tx.scalars(
        select(Application.created_at).where(
            Application.created_at >= start, Application.created_at < end
        )
    )
    # A session counts on the day it was queued (created, if it never was).
    sessions = (
        await tx.execute(
            select(
                WitnessSession.witness_id,
                WitnessSession.queued_at,
                WitnessSession.started_at,
                WitnessSession.ended_at,
                WitnessSession.created_at,
                WitnessSession.verdict,
                WitnessSession.reason_code,
            ).where(
                ((WitnessSession.queued_at >= start) & (WitnessSession.queued_at < end))
                | (
                    WitnessSession.queued_at.is_(None)
                    & (WitnessSession.created_at >= start)
                    & (WitnessSession.created_at < end)
                )
            )
        )
    ).all()
    reviews = (
        await tx.execute(
            select(Review.created_at, Review.decided_at).where(
                Review.decided_at >= start, Review.decided_at < end
            )
        )
    ).all()
    callbacks = (
        await tx.execute(
            select(Callback.created_at, Callback.outcome).where(
                Callback.created_at >= start, Callback.created_at < end
            )
        )
    ).all()
    # A18: a one-way session counts for the witness who reviewed it, once one has.
    sessions = [row for row in sessions if row.witness_id is not None]
    witness_ids = {row.witness_id for row in sessions}
    names: dict[int, str] = {}
    if witness_ids:
        staff = await tx.execute(
            select(Staff.id, Staff.display_name).where(Staff.id.in_(witness_ids))
        )
        names = {row.id: row.display_name for row in staff}
    return Facts(
        application_times=list(app_times),
        sessions=[SessionFact(*row) for row in sessions],  # type: ignore[arg-type]
        reviews=[ReviewFact(claimed_at=r.created_at, decided_at=r.decided_at) for r in reviews],
        callbacks=[CallbackFact(at=c.created_at, outcome=c.outcome) for c in callbacks],
        witness_names=names,
    )


async def supervision_report(
    db: async_sessionmaker[AsyncSession],
    *,
    staff_id: int,
    first: str | None,
    last: str | None,
    zone: tzinfo,
    action: str = VIEWED,
) -> Report:
    """The report for the asked-for local days (``YYYY-MM-DD``, inclusive; the last week
    when absent), read and audited in one transaction."""
    today = utcnow().astimezone(zone).date()
    first_day, last_day = parse_range(first, last, today=today)
    async with db.begin() as tx:
        facts = await _facts(tx, first_day=first_day, last_day=last_day, zone=zone)
        await append_audit(
            tx,
            actor=f"staff:{staff_id}",
            action=action,
            subject_type="supervision",
            subject_id=f"{first_day.isoformat()}..{last_day.isoformat()}",
            details={"from": first_day.isoformat(), "to": last_day.isoformat()},
        )
    return build_report(facts, first_day=first_day, last_day=last_day, zone=zone)


def _spread_json(s: Spread) -> dict[str, float | int | None]:
    return {"count": s.count, "p50": s.p50, "p95": s.p95}


def _counts_json(row: DayRow | WitnessRow) -> dict[str, object]:
    return {
        "sessions": row.sessions,
        "passed": row.passed,
        "failed": row.failed,
        "fail_reasons": row.fail_reasons,
        "wait_s": _spread_json(row.wait),
        "call_s": _spread_json(row.call),
    }


def _day_json(row: DayRow) -> dict[str, object]:
    return {
        "day": row.day.isoformat(),
        "applications": row.applications,
        **_counts_json(row),
        "review_s": _spread_json(row.review),
        "callbacks": row.callbacks,
        "callbacks_reached": row.callbacks_reached,
    }


def report_json(report: Report) -> dict[str, object]:
    total = _day_json(report.total)
    del total["day"]
    return {
        "from": report.first_day.isoformat(),
        "to": report.last_day.isoformat(),
        "days": [_day_json(d) for d in report.days],
        "witnesses": [
            {"witness_id": w.witness_id, "name": w.name, **_counts_json(w)}
            for w in report.witnesses
        ],
        "total": total,
    }


CSV_HEADER = [
    "范围 scope",
    "日期 day",
    "见证人 witness",
    "申请 applications",
    "见证 sessions",
    "通过 passed",
    "不通过 failed",
    "不通过原因 fail reasons",
    "排队等待 p50 (s) queue wait p50",
    "排队等待 p95 (s) queue wait p95",
    "通话时长 p50 (s) call p50",
    "通话时长 p95 (s) call p95",
    "复核用时 p50 (s) review p50",
    "复核用时 p95 (s) review p95",
    "回访 callbacks",
    "回访接通 callbacks reached",
]
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _reasons_cell(reasons: dict[str, int]) -> str:
    return "; ".join(f"{code}: {n}" for code, n in reasons.items())


def report_csv(report: Report) -> str:
    """One row per day, one per witness, one for the range; UTF-8 text (the handler adds
    the byte-order mark Excel needs to read Chinese)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_HEADER)
    span = f"{report.first_day.isoformat()}..{report.last_day.isoformat()}"
    for d in [*report.days, report.total]:
        writer.writerow(
            _cell(v)
            for v in [
                "日 day" if d is not report.total else "合计 total",
                d.day.isoformat() if d is not report.total else span,
                "",
                d.applications,
                d.sessions,
                d.passed,
                d.failed,
                _reasons_cell(d.fail_reasons),
                d.wait.p50,
                d.wait.p95,
                d.call.p50,
                d.call.p95,
                d.review.p50,
                d.review.p95,
                d.callbacks,
                d.callbacks_reached,
            ]
        )
    for w in report.witnesses:
        writer.writerow(
            _cell(v)
            for v in [
                "见证人 witness",
                span,
                w.name,
                "",
                w.sessions,
                w.passed,
                w.failed,
                _reasons_cell(w.fail_reasons),
                w.wait.p50,
                w.wait.p95,
                w.call.p50,
                w.call.p95,
                "",
                "",
                "",
                "",
            ]
        )
    return out.getvalue()
