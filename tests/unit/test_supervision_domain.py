"""Supervision statistics (A23): percentiles, local days, per-witness pass/fail, empty data."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from server.domain.errors import InvalidInput
from server.domain.supervision import (
    CallbackFact,
    Facts,
    ReviewFact,
    SessionFact,
    build_report,
    parse_range,
    percentile,
    utc_bounds,
)
from server.services.supervision import report_csv

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def session(
    witness_id: int,
    queued: datetime,
    *,
    wait_s: int = 30,
    call_s: int = 300,
    verdict: str | None = "pass",
    reason: str | None = None,
) -> SessionFact:
    started = queued + timedelta(seconds=wait_s)
    return SessionFact(
        witness_id=witness_id,
        queued_at=queued,
        started_at=started,
        ended_at=started + timedelta(seconds=call_s),
        created_at=queued,
        verdict=verdict,
        reason_code=reason,
    )


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert percentile(values, 50) == 10.0
    assert percentile(values, 95) == 19.0
    assert percentile(values, 100) == 20.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # order of input does not matter
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(values, 0)


def test_local_day_grouping_across_midnight_utc() -> None:
    # 15:30 UTC on 1 March is 23:30 in Shanghai (1 March); 16:30 UTC is 00:30 on 2 March.
    facts = Facts(
        application_times=[at(1, 15, 30), at(1, 16, 30), at(1, 16, 45)],
        sessions=[session(1, at(1, 15, 30)), session(1, at(1, 16, 30))],
    )
    report = build_report(
        facts, first_day=date(2026, 3, 1), last_day=date(2026, 3, 2), zone=SHANGHAI
    )
    assert [(d.day.day, d.applications, d.sessions) for d in report.days] == [(1, 1, 1), (2, 2, 1)]
    # The same facts read in UTC all fall on 1 March.
    utc = build_report(facts, first_day=date(2026, 3, 1), last_day=date(2026, 3, 2), zone=UTC)
    assert [(d.applications, d.sessions) for d in utc.days] == [(3, 2), (0, 0)]


def test_facts_outside_the_range_are_ignored_and_bounds_cover_local_days() -> None:
    start, end = utc_bounds(date(2026, 3, 2), date(2026, 3, 2), SHANGHAI)
    assert (start, end) == (at(1, 16), at(2, 16))
    facts = Facts(application_times=[at(1, 15, 59), at(1, 16), at(2, 16)])
    report = build_report(
        facts, first_day=date(2026, 3, 2), last_day=date(2026, 3, 2), zone=SHANGHAI
    )
    assert report.total.applications == 1


def test_per_witness_pass_fail_with_reasons_and_spreads() -> None:
    morning = at(3, 2)
    facts = Facts(
        sessions=[
            session(7, morning, wait_s=10, call_s=100),
            session(7, morning, wait_s=20, call_s=200, verdict="fail", reason="not_own_will"),
            session(7, morning, wait_s=30, call_s=300, verdict="fail", reason="not_own_will"),
            session(7, morning, wait_s=40, call_s=400, verdict="fail", reason="identity_mismatch"),
            session(9, morning, wait_s=50, call_s=500, verdict="fail", reason=None),
            # Never started: counts as a session, has no wait or call length.
            SessionFact(9, morning, None, None, morning, None, None),
        ],
        witness_names={7: "王见证"},
    )
    report = build_report(
        facts, first_day=date(2026, 3, 3), last_day=date(2026, 3, 3), zone=SHANGHAI
    )
    wang, other = report.witnesses
    assert (wang.name, wang.sessions, wang.passed, wang.failed) == ("王见证", 4, 1, 3)
    assert wang.fail_reasons == {"not_own_will": 2, "identity_mismatch": 1}
    assert list(wang.fail_reasons) == ["not_own_will", "identity_mismatch"]  # most first
    assert (wang.wait.p50, wang.wait.p95, wang.call.p50) == (20.0, 40.0, 200.0)
    assert (other.name, other.sessions, other.failed) == ("#9", 2, 1)
    assert other.fail_reasons == {"unspecified": 1}
    assert other.wait.count == 1
    total = report.total
    assert (total.sessions, total.passed, total.failed) == (6, 1, 4)
    assert total.wait.p95 == 50.0


def test_reviews_count_when_decided_and_callbacks_reached() -> None:
    facts = Facts(
        reviews=[
            ReviewFact(claimed_at=at(4, 1), decided_at=at(4, 1, 10)),
            ReviewFact(claimed_at=at(4, 1), decided_at=at(4, 1, 30)),
            ReviewFact(claimed_at=at(4, 1), decided_at=None),  # still open
        ],
        callbacks=[
            CallbackFact(at(4, 2), "unreachable"),
            CallbackFact(at(4, 3), "confirmed"),
            CallbackFact(at(4, 4), "denied"),
        ],
    )
    report = build_report(
        facts, first_day=date(2026, 3, 4), last_day=date(2026, 3, 4), zone=SHANGHAI
    )
    day = report.days[0]
    assert (day.review.count, day.review.p50, day.review.p95) == (2, 600.0, 1800.0)
    assert (day.callbacks, day.callbacks_reached) == (3, 2)


def test_empty_data_still_lists_every_day() -> None:
    report = build_report(
        Facts(), first_day=date(2026, 3, 1), last_day=date(2026, 3, 7), zone=SHANGHAI
    )
    assert len(report.days) == 7
    assert report.witnesses == []
    assert report.total.sessions == 0
    assert report.total.wait.p50 is None
    assert report.total.fail_reasons == {}


def test_parse_range_defaults_and_bounds() -> None:
    today = date(2026, 3, 10)
    assert parse_range(None, None, today=today) == (date(2026, 3, 4), today)
    assert parse_range("2026-01-01", "2026-04-02", today=today) == (
        date(2026, 1, 1),
        date(2026, 4, 2),
    )  # 92 days
    for first, last, code in [
        ("2026-01-01", "2026-04-03", "range_too_long"),
        ("2026-03-05", "2026-03-04", "bad_range"),
        ("2026-3-5", None, "bad_date"),
        ("2026-02-30", None, "bad_date"),
        ("yesterday", None, "bad_date"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            parse_range(first, last, today=today)
        assert caught.value.code == code


def test_csv_cells_never_start_a_formula() -> None:
    facts = Facts(sessions=[session(1, at(3, 2))], witness_names={1: "=HYPERLINK(1)"})
    report = build_report(
        facts, first_day=date(2026, 3, 3), last_day=date(2026, 3, 3), zone=SHANGHAI
    )
    text = report_csv(report)
    assert "'=HYPERLINK(1)" in text
    assert ",=HYPERLINK" not in text
