"""What the investor says in a one-way recording (A18.5), versioned like the scripts.

A18.5 asks for a clear statement that the investor knows the securities market's risks,
has read and fully understood the account-opening agreement, and opens the account with
this agency of their own free will. The version is stored with every take.
"""

from __future__ import annotations

__all__ = ["STATEMENT_EN", "STATEMENT_VERSION", "STATEMENT_ZH", "statement"]

STATEMENT_VERSION = "2026-12-04.1"
STATEMENT_ZH = (
    "本人{name}，已知晓证券市场风险，已阅读并充分理解开户协议条款，自愿在{agency}开立证券账户。"
)
STATEMENT_EN = (
    "I, {name}, know the risks of the securities market, have read and fully understood "
    "the account-opening agreement, and open a securities account with {agency} of my "
    "own free will."
)


def statement(name: str, agency_zh: str, agency_en: str) -> dict[str, str]:
    return {
        "version": STATEMENT_VERSION,
        "zh": STATEMENT_ZH.format(name=name, agency=agency_zh),
        "en": STATEMENT_EN.format(name=name, agency=agency_en),
    }
