"""The reviewer's decision (A17.5)."""

from __future__ import annotations

from enum import StrEnum


class ReviewDecision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
