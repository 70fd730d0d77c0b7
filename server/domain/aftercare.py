"""After approval (A8, A9, A17.6): callback outcomes, account and notice statuses."""

from __future__ import annotations

from enum import StrEnum


class CallbackOutcome(StrEnum):
    CONFIRMED = "confirmed"  # the investor confirmed it was them and their own will
    DENIED = "denied"  # the investor denied opening the account: the application fails
    UNREACHABLE = "unreachable"  # another attempt, up to callback.max_attempts


class AccountStatus(StrEnum):
    ACTIVE = "active"
    BLOCKED = "blocked"  # A17.6: opened first, unusable until the callback confirms
    CANCELLED = "cancelled"  # A22: closed by a holder's cancellation here


class NoticeStatus(StrEnum):
    SENT = "sent"
    FAILED = "failed"
