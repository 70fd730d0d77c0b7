"""A witness session's states, its two parties and the witness's verdict (A17.3, A17.4).

Pure: the service layer stores these values; nothing here touches the database.
"""

from __future__ import annotations

from enum import StrEnum


class SessionState(StrEnum):
    PLACED = "placed"  # offered and accepted; waiting for both parties to join
    LIVE = "live"  # both parties joined
    ENDED = "ended"  # the witness gave a verdict
    ABORTED = "aborted"  # a party left for good, or the session was cancelled
    INTERRUPTED = "interrupted"  # its media node stopped (crash) mid-session


# A session still running: its media may be opened and its parties may (re)join.
OPEN_STATES = frozenset({SessionState.PLACED, SessionState.LIVE})


class SessionMode(StrEnum):
    """A17: a witness on the call; A18: the investor records alone, a witness reviews."""

    TWO_WAY = "two_way"
    ONE_WAY = "one_way"


class Party(StrEnum):
    """The two ends of a witness session's call."""

    INVESTOR = "investor"
    WITNESS = "witness"

    @property
    def other(self) -> Party:
        return Party.WITNESS if self is Party.INVESTOR else Party.INVESTOR


class Verdict(StrEnum):
    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    FAIL = "fail"
