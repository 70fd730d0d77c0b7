"""The session socket's message table: roles checked in one place, the same answer for
every message of the wrong party, unknown and malformed types refused (issue 14)."""

from __future__ import annotations

from typing import Any

import pytest

from server.domain.errors import Forbidden, InvalidInput
from server.domain.session import Party
from server.web.session_messages import MESSAGES, SessionParty, dispatch


def _party(role: Party) -> SessionParty:
    # Refused messages never reach a handler, so nothing behind the party is touched.
    return SessionParty(rt=None, socket=None, session_id="s1", role=role, party="1")  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", sorted(k for k, (who, _) in MESSAGES.items() if who))
async def test_every_witness_message_from_the_investor_gets_witness_only(kind: str) -> None:
    assert MESSAGES[kind][0] is Party.WITNESS
    with pytest.raises(Forbidden) as refused:
        await dispatch(_party(Party.INVESTOR), {"type": kind})
    assert refused.value.code == "witness_only"


@pytest.mark.parametrize("kind", ["nonsense", "", ["offer"], {"a": 1}, 7, None])
async def test_unknown_or_malformed_types_are_refused(kind: Any) -> None:
    with pytest.raises(InvalidInput) as refused:
        await dispatch(_party(Party.WITNESS), {"type": kind})
    assert refused.value.code == "unknown_message"


def test_the_table_covers_what_the_pages_send() -> None:
    sent_by_pages = {
        "ping", "offer", "mute", "chat", "capture_still", "unmask_id", "disclosure_show",
        "disclosure_confirm", "step_start", "step_mark", "face_judge", "verdict",
    }  # fmt: skip
    assert set(MESSAGES) == sent_by_pages
