"""A one-way attempt's socket (A18): the investor's WebRTC offer, the server's
instructions and results, the statement's start and end. Admitted by the session token
the attempt's start returned; the node that placed it runs it (ws_proxy relays a socket
that reached a sibling worker). Closing the socket before the attempt ends fails it: A18
wants each attempt recorded live in one go, and the investor may start another.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from server.domain.errors import DomainError, InvalidInput
from server.domain.session import Party
from server.http.access import public
from server.http.keys import RUNTIME
from server.services.pairing import session_tokens
from server.web import ws_proxy
from server.web.session_messages import MAX_SDP
from server.web.ws_common import open_socket, run_socket, send, send_error
from server.web.ws_frames import bad_message, text_field

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


@routes.get("/ws/oneway/{session_id}")
@public  # admitted by the session token, checked below
async def oneway_socket(request: web.Request) -> web.StreamResponse:
    relayed = await ws_proxy.relay_to_owner(request)
    if relayed is not None:
        return relayed
    rt = request.app[RUNTIME]
    socket = open_socket(request)
    await socket.prepare(request)
    try:
        grant = session_tokens.verify(rt.protector, request.query.get("token", ""), now=time.time())
        if grant.session_id != request.match_info["session_id"] or grant.role != Party.INVESTOR:
            raise InvalidInput(
                "session_mismatch", "Token is for another session.", "凭证与会话不符。"
            )
    except DomainError as exc:
        await send_error(socket, exc)
        await socket.close(code=4401, message=b"unauthorised")
        return socket
    session_id = grant.session_id

    async def say(message: dict[str, Any]) -> None:
        await send(socket, message)
        if message.get("type") == "oneway.done":
            # Not here: this may run inside this socket's own message handler, and a close
            # waits for the reply that only the (now busy) reading loop would take.
            rt.media.detach(_close(socket))

    try:
        director = await rt.oneway.open(session_id, say)
    except DomainError as exc:
        await send_error(socket, exc)
        await socket.close(code=4409, message=b"attempt over")
        return socket
    await send(
        socket,
        {
            "type": "joined",
            "session_id": session_id,
            "ice_servers": rt.media.ice_servers(f"investor:{grant.party}"),
            "sequence_length": len(director.sequence),
        },
    )

    async def on_client(data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "offer":
            sdp = text_field(data, "sdp", max_length=MAX_SDP)
            answer = await rt.media.answer(session_id, Party.INVESTOR, sdp)
            await send(socket, {"type": "answer", "sdp": answer})
        elif kind == "statement_start":
            director.statement_start()
        elif kind == "statement_done":
            director.statement_done()
        else:
            raise bad_message("Unknown message type.", "未知的消息类型。")

    async def on_channel(_channel: str, _message: dict[str, Any]) -> None:
        return None

    rt.metrics.live_sessions.inc()
    try:
        await run_socket(
            socket,
            backend=rt.queue,
            channels=[f"oneway:{session_id}"],
            on_client=on_client,
            on_channel=on_channel,
        )
    finally:
        rt.metrics.live_sessions.dec()
        rt.media.detach(rt.oneway.left(session_id))
    return socket


async def _close(socket: web.WebSocketResponse) -> None:
    await socket.close()
