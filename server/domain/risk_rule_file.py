"""The risk rule file (A23): TOML text read into a ``RuleSet``, every fault named. Pure.

Everything wrong with a rule file is a ``RuleFileError`` naming the key at fault
(``rules[3].window_minutes: must be a positive integer``): unknown keys, unknown kinds,
and parameters that cannot describe anything real (a negative window, an hour of 25,
a threshold out of range, a flag on a field the facts do not have). The server refuses
to start on one, so a bad edit never silently switches monitoring off.

The file::

    version = "2025.1"            # recorded with every alert the rules raise
    [response_hours]              # how long an alert may wait, per severity
    high = 4
    medium = 24
    low = 72
    [[rules]]
    id = "shared_device"
    kind = "shared_identifier"
    severity = "high"
    description_zh = "…"
    description_en = "…"
    hold_application = true       # optional, high severity only; default false
    enabled = true                # optional; default true
    identifier = "device"         # the kind's parameters, inline
    min_applications = 3
    window_minutes = 1440
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from datetime import timedelta
from enum import StrEnum
from typing import Any, TypeVar

from server.domain.risk_facts import APPLICATION_FIELDS, FailureKind, Identifier
from server.domain.risk_rules import (
    HOLDS_NOTHING,
    MAX_FACE_DISTANCE,
    MAX_PERIOD_DAYS,
    MEMBERSHIP,
    OFFSET_MINUTES,
    ORDERING,
    CallbackFailed,
    CallbackOverdue,
    Direction,
    FaceMismatchPass,
    FieldFlag,
    FlagOp,
    Parameters,
    RecordingDamage,
    RepeatedFailures,
    ReviewerSpeed,
    Rule,
    RuleKind,
    RuleSet,
    Severity,
    SharedIdentifier,
    ShortSession,
    WitnessHours,
    WitnessMetric,
    WitnessOutlier,
)

__all__ = ["KEYS", "RuleFileError", "parse_rule_set", "rule_set_from_toml"]

E = TypeVar("E", bound=StrEnum)


class RuleFileError(ValueError):
    """A rule file that cannot be used; ``key`` is the path of the key at fault."""

    def __init__(self, key: str, reason: str, *, source: str = "") -> None:
        message = f"{key}: {reason}" if key else reason
        super().__init__(f"{source}: {message}" if source else message)
        self.key = key
        self.reason = reason
        self.source = source


_RULE_ID = re.compile(r"[a-z][a-z0-9_]{0,63}")
_COMMON_KEYS = frozenset(
    {"id", "kind", "severity", "description_zh", "description_en", "hold_application"} | {"enabled"}
)


class _Table:
    """One TOML table read key by key; ``done`` refuses the keys nobody asked for."""

    def __init__(self, data: object, at: str) -> None:
        if not isinstance(data, Mapping):
            raise RuleFileError(at, "must be a table")
        self.data: Mapping[str, Any] = data
        self.at = at
        self.read: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.at}.{name}" if self.at else name

    def get(self, name: str, default: Any = None) -> Any:
        self.read.add(name)
        if name not in self.data:
            if default is None:
                raise RuleFileError(self.key(name), "required")
            return default
        return self.data[name]

    def integer(
        self, name: str, low: int, high: int | None = None, default: int | None = None
    ) -> int:
        value = self.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            what = {0: "a non-negative integer", 1: "a positive integer"}.get(
                low, f"an integer of at least {low}"
            )
            raise RuleFileError(self.key(name), f"must be {what}")
        if high is not None and value > high:
            raise RuleFileError(self.key(name), f"must be at most {high}")
        return value

    def number(self, name: str, low: float, high: float, *, low_open: bool = True) -> float:
        value = self.get(name)
        ok = not isinstance(value, bool) and isinstance(value, int | float)
        if ok and (value <= low if low_open else value < low):
            ok = False
        if not ok or value > high:
            bracket = "(" if low_open else "["
            raise RuleFileError(self.key(name), f"must be a number in {bracket}{low}, {high}]")
        return float(value)

    def text(self, name: str, default: str | None = None) -> str:
        value = self.get(name, default)
        if not isinstance(value, str) or not value.strip():
            raise RuleFileError(self.key(name), "must be non-empty text")
        return value.strip()

    def flag(self, name: str, default: bool) -> bool:
        value = self.get(name, default)
        if not isinstance(value, bool):
            raise RuleFileError(self.key(name), "must be true or false")
        return value

    def choice(self, name: str, enum: type[E], default: E | None = None) -> E:
        value = self.get(name, default)
        try:
            return enum(value)
        except ValueError:
            options = ", ".join(e.value for e in enum)
            raise RuleFileError(self.key(name), f"must be one of {options}") from None

    def done(self, allowed: frozenset[str]) -> None:
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            raise RuleFileError(self.key(unknown[0]), "unknown key")


def rule_set_from_toml(text: str) -> RuleSet:
    """Parse a rule file's text; ``RuleFileError`` names what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleFileError("", f"invalid TOML: {exc}") from exc
    return parse_rule_set(data)


def parse_rule_set(data: Mapping[str, Any]) -> RuleSet:
    table = _Table(data, "")
    table.done(frozenset({"version", "response_hours", "rules"}))
    version = table.text("version")
    response = _parse_response(table.get("response_hours"))
    raw_rules = table.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RuleFileError("rules", "must list at least one rule ([[rules]])")
    rules: list[Rule] = []
    seen: set[str] = set()
    for n, raw in enumerate(raw_rules):
        rule = _parse_rule(_Table(raw, f"rules[{n}]"))
        if rule.id in seen:
            raise RuleFileError(f"rules[{n}].id", f"repeats {rule.id!r}")
        seen.add(rule.id)
        rules.append(rule)
    return RuleSet(version, response, tuple(rules))


def _parse_response(raw: object) -> dict[Severity, timedelta]:
    table = _Table(raw, "response_hours")
    table.done(frozenset(Severity))
    hours = {s: table.integer(s.value, 1, 24 * 366) for s in Severity}
    # A more severe alert never waits longer than a milder one.
    for sooner, later in ((Severity.HIGH, Severity.MEDIUM), (Severity.MEDIUM, Severity.LOW)):
        if hours[sooner] > hours[later]:
            raise RuleFileError(table.key(sooner.value), f"must not be longer than {later.value}'s")
    return {s: timedelta(hours=h) for s, h in hours.items()}


def _parse_rule(table: _Table) -> Rule:
    rule_id = table.text("id")
    if not _RULE_ID.fullmatch(rule_id):
        raise RuleFileError(table.key("id"), "must be lower-case letters, digits and _")
    kind = table.choice("kind", RuleKind)
    severity = table.choice("severity", Severity)
    # Unknown keys first: a misspelt parameter is named as such, not as a missing one.
    table.done(_COMMON_KEYS | KEYS[kind])
    parameters = _PARSERS[kind](table)
    hold = table.flag("hold_application", False)
    if hold and severity is not Severity.HIGH:
        raise RuleFileError(table.key("hold_application"), "only a high-severity rule may hold")
    if hold and kind in HOLDS_NOTHING:
        raise RuleFileError(table.key("hold_application"), f"{kind} concerns no application")
    return Rule(
        id=rule_id,
        kind=kind,
        severity=severity,
        description_zh=table.text("description_zh"),
        description_en=table.text("description_en"),
        parameters=parameters,
        hold_application=hold,
        enabled=table.flag("enabled", True),
    )


# The parameter keys each kind accepts (beside the common ones).
KEYS: Mapping[RuleKind, frozenset[str]] = {
    RuleKind.SHARED_IDENTIFIER: frozenset({"identifier", "min_applications", "window_minutes"}),
    RuleKind.REPEATED_FAILURES: frozenset({"failures", "min_failures", "window_days"}),
    RuleKind.FACE_MISMATCH_PASS: frozenset({"max_distance"}),
    RuleKind.SHORT_SESSION: frozenset({"min_seconds"}),
    RuleKind.RECORDING_DAMAGE: frozenset({"min_damaged_stretches", "flag_recovered"}),
    RuleKind.WITNESS_OUTLIER: frozenset(
        {"metric", "direction", "max_z", "min_spread", "min_sessions", "min_peers"}
        | {"period_days"}
    ),
    RuleKind.WITNESS_HOURS: frozenset({"start_hour", "end_hour", "weekdays", "utc_offset_minutes"}),
    RuleKind.REVIEWER_SPEED: frozenset({"max_ratio", "min_approvals", "min_peers", "period_days"}),
    RuleKind.CALLBACK_FAILED: frozenset({"include_unreachable"}),
    RuleKind.CALLBACK_OVERDUE: frozenset({"grace_hours"}),
    RuleKind.FIELD_FLAG: frozenset({"field", "op", "value"}),
}


def _shared_identifier(t: _Table) -> SharedIdentifier:
    return SharedIdentifier(
        identifier=t.choice("identifier", Identifier),
        min_applications=t.integer("min_applications", 2),
        window_minutes=t.integer("window_minutes", 1),
    )


def _repeated_failures(t: _Table) -> RepeatedFailures:
    raw = t.get("failures")
    if not isinstance(raw, list) or not raw:
        raise RuleFileError(t.key("failures"), "must list at least one failure kind")
    try:
        failures = frozenset(FailureKind(v) for v in raw)
    except ValueError:
        options = ", ".join(k.value for k in FailureKind)
        raise RuleFileError(t.key("failures"), f"each must be one of {options}") from None
    return RepeatedFailures(
        failures=failures,
        min_failures=t.integer("min_failures", 1),
        window_days=t.integer("window_days", 1),
    )


def _witness_outlier(t: _Table) -> WitnessOutlier:
    metric = t.choice("metric", WitnessMetric)
    spread_limit = 1.0 if metric is WitnessMetric.PASS_RATE else 86_400.0
    return WitnessOutlier(
        metric=metric,
        direction=t.choice("direction", Direction, Direction.EITHER),
        max_z=t.number("max_z", 0.0, 100.0),
        min_spread=t.number("min_spread", 0.0, spread_limit),
        min_sessions=t.integer("min_sessions", 1),
        min_peers=t.integer("min_peers", 2),
        period_days=t.integer("period_days", 1, MAX_PERIOD_DAYS),
    )


def _witness_hours(t: _Table) -> WitnessHours:
    start, end = t.integer("start_hour", 0, 23), t.integer("end_hour", 0, 23)
    if start == end:
        raise RuleFileError(t.key("end_hour"), "must differ from start_hour")
    raw_days = t.get("weekdays", [1, 2, 3, 4, 5, 6, 7])
    if (
        not isinstance(raw_days, list)
        or not raw_days
        or not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 7 for d in raw_days)
    ):
        raise RuleFileError(t.key("weekdays"), "must list ISO weekdays, 1 (Monday) to 7")
    return WitnessHours(
        start_hour=start,
        end_hour=end,
        weekdays=frozenset(raw_days),
        utc_offset_minutes=t.integer("utc_offset_minutes", *OFFSET_MINUTES, default=480),
    )


def _reviewer_speed(t: _Table) -> ReviewerSpeed:
    ratio = t.number("max_ratio", 0.0, 1.0)
    if ratio >= 1.0:
        raise RuleFileError(t.key("max_ratio"), "must be below 1 (faster than peers)")
    return ReviewerSpeed(
        max_ratio=ratio,
        min_approvals=t.integer("min_approvals", 1),
        min_peers=t.integer("min_peers", 2),
        period_days=t.integer("period_days", 1, MAX_PERIOD_DAYS),
    )


def _field_flag(t: _Table) -> FieldFlag:
    name = t.text("field")
    spec = APPLICATION_FIELDS.get(name)
    if spec is None:
        raise RuleFileError(
            t.key("field"), f"no such fact; one of {', '.join(sorted(APPLICATION_FIELDS))}"
        )
    op = t.choice("op", FlagOp)
    if op in ORDERING and spec.type is str:
        raise RuleFileError(t.key("op"), f"{name} is text: use ==, !=, in or not_in")
    raw = t.get("value")
    items = raw if isinstance(raw, list) else [raw]
    if (op in MEMBERSHIP) != isinstance(raw, list) or not items:
        what = "a non-empty list" if op in MEMBERSHIP else "a single value"
        raise RuleFileError(t.key("value"), f"must be {what} for {op.value}")
    for item in items:
        _check_fact_value(t.key("value"), name, item)
    value = tuple(items) if isinstance(raw, list) else raw
    return FieldFlag(field=name, op=op, value=value)


def _check_fact_value(key: str, name: str, item: object) -> None:
    spec = APPLICATION_FIELDS[name]
    if spec.type is int:
        if isinstance(item, bool) or not isinstance(item, int):
            raise RuleFileError(key, f"{name} is a whole number")
        if (spec.minimum is not None and item < spec.minimum) or (
            spec.maximum is not None and item > spec.maximum
        ):
            raise RuleFileError(key, f"{name} lies between {spec.minimum} and {spec.maximum}")
    elif not isinstance(item, str):
        raise RuleFileError(key, f"{name} is text")
    elif spec.choices is not None and item not in spec.choices:
        raise RuleFileError(key, f"{name} is one of {', '.join(sorted(spec.choices))}")


_PARSERS: Mapping[RuleKind, Callable[[_Table], Parameters]] = {
    RuleKind.SHARED_IDENTIFIER: _shared_identifier,
    RuleKind.REPEATED_FAILURES: _repeated_failures,
    RuleKind.FACE_MISMATCH_PASS: lambda t: FaceMismatchPass(
        t.number("max_distance", 0.0, MAX_FACE_DISTANCE)
    ),
    RuleKind.SHORT_SESSION: lambda t: ShortSession(t.integer("min_seconds", 1, 86_400)),
    RuleKind.RECORDING_DAMAGE: lambda t: RecordingDamage(
        min_damaged_stretches=t.integer("min_damaged_stretches", 1),
        flag_recovered=t.flag("flag_recovered", True),
    ),
    RuleKind.WITNESS_OUTLIER: _witness_outlier,
    RuleKind.WITNESS_HOURS: _witness_hours,
    RuleKind.REVIEWER_SPEED: _reviewer_speed,
    RuleKind.CALLBACK_FAILED: lambda t: CallbackFailed(t.flag("include_unreachable", True)),
    RuleKind.CALLBACK_OVERDUE: lambda t: CallbackOverdue(t.integer("grace_hours", 0, 24 * 30, 0)),
    RuleKind.FIELD_FLAG: _field_flag,
}
