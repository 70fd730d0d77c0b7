"""Witness eligibility (A7, A24), roles, credentials rules and login back-off."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from server.domain.errors import InvalidInput
from server.domain.staff import (
    LOGIN_DELAY_MAX_SECONDS,
    Role,
    WitnessQualification,
    eligibility_problems,
    is_eligible_witness,
    lockout_until,
    login_delay_seconds,
    parse_roles,
    validate_password,
    validate_username,
)

QUALIFIED = WitnessQualification(
    has_labour_contract=True,
    training_passed_on=date(2026, 1, 5),
    is_marketing=False,
    licence_number="S0850120090042",
)


def test_a7_qualified_witness_is_eligible() -> None:
    assert is_eligible_witness(QUALIFIED)
    assert eligibility_problems(QUALIFIED) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"has_labour_contract": False}, "no_labour_contract"),
        ({"training_passed_on": None}, "training_not_passed"),
        ({"is_marketing": True}, "marketing_staff"),
        ({"licence_number": "  "}, "no_licence_number"),
        ({"active": False}, "staff_disabled"),
    ],
)
def test_a7_each_missing_qualification_makes_ineligible(
    change: dict[str, object], problem: str
) -> None:
    q = WitnessQualification(**{**QUALIFIED.__dict__, **change})  # type: ignore[arg-type]
    assert not is_eligible_witness(q)
    assert eligibility_problems(q) == [problem]


def test_all_problems_are_listed_together() -> None:
    q = WitnessQualification(False, None, True, "")
    assert eligibility_problems(q) == [
        "no_labour_contract",
        "training_not_passed",
        "marketing_staff",
        "no_licence_number",
    ]


def test_parse_roles() -> None:
    assert parse_roles("witness, reviewer") == {Role.WITNESS, Role.REVIEWER}
    assert parse_roles(["ADMIN"]) == {Role.ADMIN}
    with pytest.raises(InvalidInput) as info:
        parse_roles("witness,boss")
    assert info.value.code == "unknown_role"
    with pytest.raises(InvalidInput):
        parse_roles(" , ")


@pytest.mark.parametrize("name", ["ab", "-abc", "a b c", "x" * 41, "zhang<script>"])
def test_bad_usernames(name: str) -> None:
    with pytest.raises(InvalidInput):
        validate_username(name)


def test_username_normalised() -> None:
    assert validate_username("  Zhang.San ") == "zhang.san"


def test_password_length() -> None:
    with pytest.raises(InvalidInput):
        validate_password("short")
    assert validate_password("a" * 12) == "a" * 12


def test_lockout_backoff_doubles_and_caps() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    kw = {"max_failures": 5, "base_seconds": 30, "max_seconds": 3600}
    assert lockout_until(4, now, **kw) is None
    assert lockout_until(5, now, **kw) == now + timedelta(seconds=30)
    assert lockout_until(6, now, **kw) == now + timedelta(seconds=60)
    assert lockout_until(7, now, **kw) == now + timedelta(seconds=120)
    assert lockout_until(30, now, **kw) == now + timedelta(seconds=3600)


def test_account_failures_only_slow_logins_with_a_capped_delay() -> None:
    assert login_delay_seconds(4, free_failures=5) == 0.0
    assert login_delay_seconds(5, free_failures=5) == 0.25
    assert login_delay_seconds(6, free_failures=5) == 0.5
    assert login_delay_seconds(7, free_failures=5) == 1.0
    # However many addresses fail for one name, its owner waits seconds, never hours.
    assert login_delay_seconds(10_000, free_failures=5) == LOGIN_DELAY_MAX_SECONDS <= 3.0
