"""A witness session's signalling socket, on the media node that owns the session.

Each party connects with its session token; messages for the other party travel on
``session:<id>:<role>``, so the two sockets may sit on different nodes (issue: placement).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from server.domain.errors import DomainError, InvalidInput
from server.services import session_tokens
from server.services.placement import session_channel
from server.web.access import public
from server.web.keys import RUNTIME
from server.web.ws_common import open_socket, run_socket, send, send_error

routes = web.RouteTableDef()
_OTHER = {"investor": "witness", "witness": "investor"}
# Message types a party may send to the other; the server adds who sent it.
_RELAYED = frozenset({"signal", "offer", "answer", "candidate", "script", "chat"})


@routes.get("/ws/session/{session_id}")
@public  # admitted by the session token, checked below
async def session_socket(request: web.Request) -> web.StreamResponse:
    # No Origin check here: the page that opens this socket is served by whichever node
    # the party reached, and no cookie admits anyone; the token does.
    rt = request.app[RUNTIME]
    ws = open_socket(request)
    await ws.prepare(request)
    try:
        grant = session_tokens.verify(rt.protector, request.query.get("token", ""), now=time.time())
        if grant.session_id != request.match_info["session_id"]:
            raise InvalidInput(
                "session_mismatch", "Token is for another session.", "凭证与会话不符。"
            )
    except DomainError as exc:
        await send_error(ws, exc)
        await ws.close(code=4401, message=b"unauthorised")
        return ws
    role, other = grant.role, _OTHER[grant.role]
    joined = False

    async def announce() -> None:
        # Recorded and announced only once subscribed: whichever party arrives second
        # tells the first, who is by then certain to be listening.
        nonlocal joined
        try:
            both = await rt.placer.party_joined(grant.session_id, role)
        except DomainError as exc:
            await send_error(ws, exc)
            await ws.close(code=4404, message=b"session not found")
            return
        joined = True
        await send(ws, {"type": "joined", "session_id": grant.session_id, "role": role})
        if both:
            await send(ws, {"type": "peer_joined", "role": other})
            await rt.queue.publish(
                session_channel(grant.session_id, other), {"type": "peer_joined", "role": role}
            )

    async def on_client(data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "ping":
            await send(ws, {"type": "pong"})
        elif kind in _RELAYED:
            await rt.queue.publish(session_channel(grant.session_id, other), {**data, "from": role})
        else:
            raise InvalidInput("unknown_message", "Unknown message type.", "未知的消息类型。")

    async def on_channel(_channel: str, message: dict[str, Any]) -> None:
        await send(ws, message)
        if message.get("type") == "peer_left":
            await ws.close()

    rt.metrics.live_sessions.inc()
    try:
        await run_socket(
            ws,
            backend=rt.queue,
            channels=[session_channel(grant.session_id, role)],
            on_client=on_client,
            on_channel=on_channel,
            on_subscribed=announce,
        )
    finally:
        rt.metrics.live_sessions.dec()
    # Until media and rejoining exist (media issue), leaving ends the session: the
    # investor goes back to the head of the queue and the witness to not-ready.
    if joined:
        await rt.placer.abort(grant.session_id, reason=f"{role}_left", left_role=role)
    return ws
