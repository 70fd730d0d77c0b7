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
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from server.domain.errors import DomainError, Forbidden, InvalidInput, TooMany, Unavailable
from server.domain.session import Party
from server.services.pairing.placement import session_channel
from server.services.runtime import Runtime
from server.web.ws_common import send
from server.web.ws_frames import bad_message, text_field

log = logging.getLogger(__name__)

MAX_SDP = 64_000
MAX_CHAT = 2_000  # characters of one chat line
# Relayed messages (mute, chat) a party may send: a burst of RELAY_BURST, then
# RELAY_PER_SECOND. A person toggles a microphone or types far slower; the limit keeps one
# party from flooding the other's page (and the pub/sub) with a loop.
RELAY_BURST = 10
RELAY_PER_SECOND = 2.0


@dataclass
class TokenBucket:
    """``take`` is True while tokens last; they come back at ``rate`` a second up to
    ``burst``. ``now`` is a monotonic clock, passed in by tests."""

    burst: float = RELAY_BURST
    rate: float = RELAY_PER_SECOND
    tokens: float = RELAY_BURST
    at: float | None = None

    def take(self, now: float) -> bool:
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(frozen=True)
class SessionParty:
    """One party's socket on one witness session, as admitted by its session token."""

    rt: Runtime
    socket: web.WebSocketResponse
    session_id: str
    role: Party
    party: str  # the application id (investor) or the staff id (witness)
    relays: TokenBucket = field(default_factory=TokenBucket)

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
    attempt = message.get("attempt")
    if (
        not isinstance(sdp, str)
        or len(sdp) > MAX_SDP
        or not (attempt is None or (isinstance(attempt, int) and not isinstance(attempt, bool)))
    ):
        raise InvalidInput("bad_offer", "Malformed offer.", "连接请求格式错误。")
    async with media_errors(sp.session_id):
        answer = await sp.rt.media.answer(sp.session_id, sp.role, sdp)
    # The page's attempt number comes back so it never applies a stale answer.
    await sp.reply({"type": "answer", "sdp": answer, "attempt": attempt})


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
    for name in ("mark", "note", "judgement"):  # the index is checked by the service
        text_field(message, name)
    media = await sp.rt.media.session(sp.session_id)
    state = await sp.rt.witnessing.act(
        session_id=sp.session_id, staff_id=sp.staff_id, media=media, message=message
    )
    await sp.reply(state)


async def _verdict(sp: SessionParty, message: dict[str, Any]) -> None:
    reason_code = message.get("reason_code")
    if reason_code is not None and not isinstance(reason_code, str):
        raise bad_message("Field reason_code must be text.", "字段 reason_code 须为文本。")
    media = await sp.rt.media.session(sp.session_id)
    await sp.rt.witnessing.conclude(
        session_id=sp.session_id,
        staff_id=sp.staff_id,
        media=media,
        result=text_field(message, "result"),
        reason_code=reason_code or None,
        notes=text_field(message, "notes"),
    )


def _mute(message: dict[str, Any]) -> dict[str, Any]:
    """What static/js/call.js sends and its peer reads: both tracks' state."""
    audio, video = message.get("audio"), message.get("video")
    if not isinstance(audio, bool) or not isinstance(video, bool):
        raise bad_message("Mute state is audio and video, true or false.", "静音状态格式错误。")
    return {"type": "mute", "audio": audio, "video": video}


def _chat(message: dict[str, Any]) -> dict[str, Any]:
    text = text_field(message, "text", max_length=MAX_CHAT)
    if not text.strip():
        raise bad_message("Empty chat message.", "消息内容为空。")
    return {"type": "chat", "text": text}


# Relayed messages: only these fields reach the other party, whatever else was sent.
_RELAYED: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"mute": _mute, "chat": _chat}


async def _relay(sp: SessionParty, message: dict[str, Any]) -> None:
    """For the other party (mute state, chat): its allowed fields, and who sent it."""
    relayed = _RELAYED[message["type"]](message)
    if not sp.relays.take(time.monotonic()):
        raise TooMany("too_many", "Too many messages; slow down.", "消息过于频繁，请稍后再试。")
    await sp.rt.queue.publish(
        session_channel(sp.session_id, sp.role.other), {**relayed, "from": sp.role}
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
