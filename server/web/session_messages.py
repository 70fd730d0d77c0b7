"""What a party may say on its session socket: one table, one delegation per message.

``MESSAGES`` maps each message type to the party allowed to send it (None: either) and
the handler that passes it to one service. Roles are checked here, in one place, so every
message of the wrong party gets the same ``witness_only`` / ``investor_only`` answer.
Handlers hold no use-case logic: the media manager answers offers, the witnessing
service takes stills and records script actions and verdicts, the queue relays.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from server.domain.errors import DomainError, Forbidden, InvalidInput, Unavailable
from server.domain.session import Party
from server.services.pairing.placement import session_channel
from server.services.runtime import Runtime
from server.web.ws_common import send

log = logging.getLogger(__name__)

MAX_SDP = 64_000


@dataclass(frozen=True)
class SessionParty:
    """One party's socket on one witness session, as admitted by its session token."""

    rt: Runtime
    socket: web.WebSocketResponse
    session_id: str
    role: Party
    party: str  # the application id (investor) or the staff id (witness)

    @property
    def staff_id(self) -> int:
        return int(self.party)

    async def reply(self, message: dict[str, Any]) -> None:
        await send(self.socket, message)


Handler = Callable[[SessionParty, dict[str, Any]], Awaitable[None]]


@contextlib.asynccontextmanager
async def media_errors(session_id: str) -> AsyncIterator[None]:
    """An unexpected media failure is an error reply, not the end of the socket."""
    try:
        yield
    except DomainError:
        raise
    except Exception as exc:
        log.exception("media operation failed", extra={"session": session_id})
        raise Unavailable(
            "media_error",
            "The video service had a problem; please try again.",
            "视频服务出现问题，请重试。",
        ) from exc


async def _ping(sp: SessionParty, _message: dict[str, Any]) -> None:
    await sp.reply({"type": "pong"})


async def _offer(sp: SessionParty, message: dict[str, Any]) -> None:
    sdp = message.get("sdp")
    if not isinstance(sdp, str) or len(sdp) > MAX_SDP:
        raise InvalidInput("bad_offer", "Malformed offer.", "连接请求格式错误。")
    async with media_errors(sp.session_id):
        answer = await sp.rt.media.answer(sp.session_id, sp.role, sdp)
    # The page's attempt number comes back so it never applies a stale answer.
    await sp.reply({"type": "answer", "sdp": answer, "attempt": message.get("attempt")})


async def _capture_still(sp: SessionParty, _message: dict[str, Any]) -> None:
    media = await sp.rt.media.session(sp.session_id)
    async with media_errors(sp.session_id):
        replies = await sp.rt.witnessing.take_still(
            session_id=sp.session_id, staff_id=sp.staff_id, media=media
        )
    for reply in replies:
        await sp.reply(reply)


async def _unmask_id(sp: SessionParty, _message: dict[str, Any]) -> None:
    number = await sp.rt.witnessing.unmask_id_number(
        session_id=sp.session_id, staff_id=sp.staff_id, protector=sp.rt.protector
    )
    await sp.reply({"type": "id_number", "value": number})


async def _script_action(sp: SessionParty, message: dict[str, Any]) -> None:
    media = await sp.rt.media.session(sp.session_id)
    state = await sp.rt.witnessing.act(
        session_id=sp.session_id, staff_id=sp.staff_id, media=media, message=message
    )
    await sp.reply(state)


async def _verdict(sp: SessionParty, message: dict[str, Any]) -> None:
    media = await sp.rt.media.session(sp.session_id)
    await sp.rt.witnessing.conclude(
        session_id=sp.session_id,
        staff_id=sp.staff_id,
        media=media,
        result=str(message.get("result", "")),
        reason_code=str(message.get("reason_code") or "") or None,
        notes=str(message.get("notes", "")),
    )


async def _relay(sp: SessionParty, message: dict[str, Any]) -> None:
    """For the other party (mute state, chat); the server says who sent it."""
    await sp.rt.queue.publish(
        session_channel(sp.session_id, sp.role.other), {**message, "from": sp.role}
    )


MESSAGES: dict[str, tuple[Party | None, Handler]] = {
    "ping": (None, _ping),
    "offer": (None, _offer),
    "mute": (None, _relay),
    "chat": (None, _relay),
    "capture_still": (Party.WITNESS, _capture_still),
    "unmask_id": (Party.WITNESS, _unmask_id),
    # The witness's script (A12, A17.4), checked and recorded by services/witnessing.
    "disclosure_show": (Party.WITNESS, _script_action),
    "disclosure_confirm": (Party.WITNESS, _script_action),
    "step_start": (Party.WITNESS, _script_action),
    "step_mark": (Party.WITNESS, _script_action),
    "face_judge": (Party.WITNESS, _script_action),
    "verdict": (Party.WITNESS, _verdict),
}


def _wrong_party(allowed: Party) -> Forbidden:
    if allowed is Party.WITNESS:
        return Forbidden("witness_only", "Only the witness does this.", "仅见证人员可操作。")
    return Forbidden("investor_only", "Only the investor does this.", "仅投资者可操作。")


async def dispatch(sp: SessionParty, message: dict[str, Any]) -> None:
    kind = message.get("type")
    entry = MESSAGES.get(kind) if isinstance(kind, str) else None
    if entry is None:
        raise InvalidInput("unknown_message", "Unknown message type.", "未知的消息类型。")
    allowed, handler = entry
    if allowed is not None and sp.role is not allowed:
        raise _wrong_party(allowed)
    await handler(sp, message)
