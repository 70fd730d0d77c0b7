"""Supervision statistics (A23): per day and per witness, what compliance and supervisors
read. Pure: the service hands in small fact rows, this module groups and counts them.

Days are the agency's local days (config ``agency.timezone``): a call queued at 23:30 UTC
counts on the next calendar day in Shanghai. Percentiles are nearest-rank, so every
p50 and p95 shown is a wait or a call length that really happened.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from server.domain.aftercare import CallbackOutcome
from server.domain.errors import InvalidInput
from server.domain.session import Verdict

# A quarter and a day: long enough for a quarterly report, short enough that one request
# reads a bounded number of rows.
MAX_RANGE_DAYS = 92
# What the page opens with when no range is asked for.
DEFAULT_RANGE_DAYS = 7


@dataclass(frozen=True)
class SessionFact:
    witness_id: int
    queued_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    created_at: datetime
    verdict: str | None
    reason_code: str | None

    @property
    def at(self) -> datetime:
        return self.queued_at or self.created_at


@dataclass(frozen=True)
class ReviewFact:
    claimed_at: datetime
    decided_at: datetime | None


@dataclass(frozen=True)
class CallbackFact:
    at: datetime
    outcome: str


@dataclass(frozen=True)
class Facts:
    """Everything one report is made from, already limited to the range by the loader."""

    application_times: Sequence[datetime] = ()
    sessions: Sequence[SessionFact] = ()
    reviews: Sequence[ReviewFact] = ()
    callbacks: Sequence[CallbackFact] = ()
    witness_names: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Spread:
    """Seconds: how many measured, the median and the 95th percentile (None when none)."""

    count: int
    p50: float | None
    p95: float | None


@dataclass(frozen=True)
class DayRow:
    day: date
    applications: int
    sessions: int
    passed: int
    failed: int
    fail_reasons: dict[str, int]
    wait: Spread
    call: Spread
    review: Spread
    callbacks: int
    callbacks_reached: int


@dataclass(frozen=True)
class WitnessRow:
    witness_id: int
    name: str
    sessions: int
    passed: int
    failed: int
    fail_reasons: dict[str, int]
    wait: Spread
    call: Spread


@dataclass(frozen=True)
class Report:
    first_day: date
    last_day: date
    days: list[DayRow]
    witnesses: list[WitnessRow]
    total: DayRow  # day = first_day; the whole range at once


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least p % of values at or below."""
    if not 0 < p <= 100:
        raise ValueError("p must be in (0, 100]")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(values: Sequence[float]) -> Spread:
    return Spread(len(values), percentile(values, 50), percentile(values, 95))


def local_day(moment: datetime, zone: tzinfo) -> date:
    if moment.tzinfo is None:  # stored in UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).date()


def parse_range(
    first: str | None, last: str | None, *, today: date, max_days: int = MAX_RANGE_DAYS
) -> tuple[date, date]:
    """The asked-for range of local days, inclusive; absent ends default to the last week."""

    def parse(name: str, value: str) -> date:
        try:
            if len(value) != 10:
                raise ValueError(value)
            return date.fromisoformat(value)
        except ValueError:
            raise InvalidInput(
                "bad_date",
                f"'{name}' must be a date as YYYY-MM-DD.",
                f"“{name}”须为 YYYY-MM-DD 格式的日期。",
                details={"field": name},
            ) from None

    last_day = parse("to", last) if last else today
    first_day = parse("from", first) if first else last_day - timedelta(DEFAULT_RANGE_DAYS - 1)
    if first_day > last_day:
        raise InvalidInput(
            "bad_range",
            "'from' is after 'to'.",
            "开始日期晚于结束日期。",
            details={"field": "from"},
        )
    if (last_day - first_day).days + 1 > max_days:
        raise InvalidInput(
            "range_too_long",
            f"At most {max_days} days at once.",
            f"一次最多查询 {max_days} 天。",
            details={"field": "from"},
        )
    return first_day, last_day


def utc_bounds(first_day: date, last_day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) in UTC covering the local days first_day..last_day."""
    start = datetime.combine(first_day, time(), zone).astimezone(UTC)
    end = datetime.combine(last_day + timedelta(1), time(), zone).astimezone(UTC)
    return start, end


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    value = (later - earlier).total_seconds()
    return value if value >= 0 else None  # a clock step back is not a negative wait


def _present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def _reasons(sessions: Iterable[SessionFact]) -> dict[str, int]:
    counts = Counter(s.reason_code or "unspecified" for s in sessions if s.verdict == Verdict.FAIL)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _day_row(
    day: date,
    applications: int,
    sessions: Sequence[SessionFact],
    reviews: Sequence[ReviewFact],
    callbacks: Sequence[CallbackFact],
) -> DayRow:
    return DayRow(
        day=day,
        applications=applications,
        sessions=len(sessions),
        passed=sum(s.verdict == Verdict.PASS for s in sessions),
        failed=sum(s.verdict == Verdict.FAIL for s in sessions),
        fail_reasons=_reasons(sessions),
        wait=spread(_present(_seconds(s.started_at, s.queued_at) for s in sessions)),
        call=spread(_present(_seconds(s.ended_at, s.started_at) for s in sessions)),
        review=spread(_present(_seconds(r.decided_at, r.claimed_at) for r in reviews)),
        callbacks=len(callbacks),
        callbacks_reached=sum(c.outcome != CallbackOutcome.UNREACHABLE for c in callbacks),
    )


def _witness_row(witness_id: int, name: str, sessions: Sequence[SessionFact]) -> WitnessRow:
    row = _day_row(date.min, 0, sessions, (), ())
    return WitnessRow(
        witness_id=witness_id,
        name=name,
        sessions=row.sessions,
        passed=row.passed,
        failed=row.failed,
        fail_reasons=row.fail_reasons,
        wait=row.wait,
        call=row.call,
    )


def build_report(facts: Facts, *, first_day: date, last_day: date, zone: tzinfo) -> Report:
    """Every day of the range (empty days included, so charts keep their scale), each
    witness who held a session in it, and the range's totals. Facts outside the range
    are ignored. A review counts on the day it was decided, open claims not at all."""
    days = [first_day + timedelta(n) for n in range((last_day - first_day).days + 1)]
    wanted = set(days)

    def on(moment: datetime) -> date | None:
        day = local_day(moment, zone)
        return day if day in wanted else None

    apps: Counter[date] = Counter()
    for moment in facts.application_times:
        if (day := on(moment)) is not None:
            apps[day] += 1
    sessions: dict[date, list[SessionFact]] = {d: [] for d in days}
    by_witness: dict[int, list[SessionFact]] = {}
    for s in facts.sessions:
        if (day := on(s.at)) is not None:
            sessions[day].append(s)
            by_witness.setdefault(s.witness_id, []).append(s)
    reviews: dict[date, list[ReviewFact]] = {d: [] for d in days}
    for r in facts.reviews:
        if r.decided_at is not None and (day := on(r.decided_at)) is not None:
            reviews[day].append(r)
    callbacks: dict[date, list[CallbackFact]] = {d: [] for d in days}
    for c in facts.callbacks:
        if (day := on(c.at)) is not None:
            callbacks[day].append(c)

    witnesses = [
        _witness_row(wid, facts.witness_names.get(wid, f"#{wid}"), rows)
        for wid, rows in by_witness.items()
    ]
    witnesses.sort(key=lambda w: (-w.sessions, w.name, w.witness_id))
    return Report(
        first_day=first_day,
        last_day=last_day,
        days=[_day_row(d, apps[d], sessions[d], reviews[d], callbacks[d]) for d in days],
        witnesses=witnesses,
        total=_day_row(
            first_day,
            sum(apps.values()),
            [s for group in sessions.values() for s in group],
            [r for group in reviews.values() for r in group],
            [c for group in callbacks.values() for c in group],
        ),
    )
