"""Staff roles, witness eligibility (A7, A24) and login back-off. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from server.domain.errors import InvalidInput


class Role(StrEnum):
    WITNESS = "witness"
    REVIEWER = "reviewer"
    CALLBACK = "callback"
    ADMIN = "admin"
    AUDITOR = "auditor"
    # A3, A23: screening hits and risk alerts; never the witness or reviewer of a case
    # they decide (checked where they decide).
    COMPLIANCE = "compliance"


def parse_roles(values: list[str] | tuple[str, ...] | str) -> frozenset[Role]:
    items = values.split(",") if isinstance(values, str) else list(values)
    roles: set[Role] = set()
    for item in items:
        name = item.strip().lower()
        if not name:
            continue
        try:
            roles.add(Role(name))
        except ValueError:
            allowed = ", ".join(r.value for r in Role)
            raise InvalidInput(
                "unknown_role",
                f"Unknown role '{name}'; allowed: {allowed}.",
                f"未知角色“{name}”；可用角色：{allowed}。",
            ) from None
    if not roles:
        raise InvalidInput("no_role", "At least one role is required.", "至少需要一个角色。")
    return frozenset(roles)


@dataclass(frozen=True)
class WitnessQualification:
    """What A7 and A24 require of a witness, as held on the staff record."""

    has_labour_contract: bool
    training_passed_on: date | None
    is_marketing: bool
    licence_number: str
    active: bool = True


def eligibility_problems(q: WitnessQualification) -> list[str]:
    """Codes of every reason the person may not witness; empty means eligible."""
    problems: list[str] = []
    if not q.active:
        problems.append("staff_disabled")
    # A7: a witness must be an employee under a labour contract with the agency ...
    if not q.has_labour_contract:
        problems.append("no_labour_contract")
    # ... who has passed the agency's training (A24) ...
    if q.training_passed_on is None:
        problems.append("training_not_passed")
    # ... and is never marketing staff.
    if q.is_marketing:
        problems.append("marketing_staff")
    # A12: the witness must be able to show a licence the investor can look up.
    if not q.licence_number.strip():
        problems.append("no_licence_number")
    return problems


def is_eligible_witness(q: WitnessQualification) -> bool:
    return not eligibility_problems(q)


USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{2,39}$")


def validate_username(raw: str) -> str:
    name = raw.strip().lower()
    if not USERNAME_RE.match(name):
        raise InvalidInput(
            "username_invalid",
            "Username must be 3-40 characters: letters, digits, '.', '_' or '-'.",
            "用户名须为3-40位字母、数字或“. _ -”。",
        )
    return name


def validate_password(raw: str) -> str:
    if len(raw) < 12:
        raise InvalidInput(
            "password_too_short",
            "Password must be at least 12 characters.",
            "密码长度至少为12位。",
        )
    if len(raw) > 256:
        raise InvalidInput("password_too_long", "Password is too long.", "密码过长。")
    return raw


def lockout_until(
    failures: int,
    now: datetime,
    *,
    max_failures: int,
    base_seconds: int,
    max_seconds: int,
) -> datetime | None:
    """Exponential back-off once ``failures`` reaches ``max_failures``.

    ``now`` is the time of the last failure. The fifth failure locks for
    ``base_seconds``, each further one doubles it, capped. Login applies it per
    (address, account) and per address, never to an account as a whole (docs/security.md).
    """
    if failures < max_failures:
        return None
    seconds = min(base_seconds * (2 ** min(failures - max_failures, 32)), max_seconds)
    return now + timedelta(seconds=seconds)


# An account's failures from every address only slow its logins, never stop them, so a
# stranger cannot keep a witness from working: the first delay, and the longest one (a
# person typing their password waits at most this; a guesser's rate is cut to match).
LOGIN_DELAY_FIRST_SECONDS = 0.25
LOGIN_DELAY_MAX_SECONDS = 3.0


def login_delay_seconds(account_failures: int, *, free_failures: int) -> float:
    """How long to hold a login for an account with this many recent failures."""
    if account_failures < free_failures:
        return 0.0
    steps = min(account_failures - free_failures, 32)
    return min(LOGIN_DELAY_FIRST_SECONDS * (1 << steps), LOGIN_DELAY_MAX_SECONDS)
