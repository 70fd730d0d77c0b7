"""The load benchmark's witness at the desk: an offer that expired under load is not the
end of the run (issue 21: a 32-session run stopped on one "offer_gone")."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from bench.clients import ServerError, accept_next_offer


@dataclass
class _Msg:
    data: str
    type: aiohttp.WSMsgType = aiohttp.WSMsgType.TEXT


class _Socket:
    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self._messages = [_Msg(json.dumps(m)) for m in messages]
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> _Msg:
        return self._messages.pop(0)

    async def send_json(self, data: dict[str, Any]) -> None:
        self.sent.append(data)


def _gone() -> dict[str, Any]:
    return {"type": "error", "error": {"code": "offer_gone", "message": "gone"}}


async def test_an_expired_offer_is_followed_by_ready_and_the_next_offer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ws = _Socket(
        [
            {"type": "offer", "offer_id": "o1"},
            _gone(),
            {"type": "state", "state": "not_ready"},
            {"type": "offer", "offer_id": "o2"},
            {"type": "matched", "session_id": "s"},
        ]
    )
    matched = await accept_next_offer(ws, 5, slot=3)  # type: ignore[arg-type]
    assert matched["session_id"] == "s"
    assert ws.sent == [
        {"type": "accept", "offer_id": "o1"},
        {"type": "ready"},
        {"type": "accept", "offer_id": "o2"},
    ]
    assert "witness slot 3: offer closed" in capsys.readouterr().err


async def test_any_other_error_still_stops_the_witness() -> None:
    ws = _Socket(
        [
            {"type": "offer", "offer_id": "o1"},
            {"type": "error", "error": {"code": "session_over", "message": "x"}},
        ]
    )
    with pytest.raises(ServerError) as caught:
        await accept_next_offer(ws, 5, slot=0)  # type: ignore[arg-type]
    assert caught.value.code == "session_over"
