"""A witness session's signalling socket, on the media node that owns the session.

Each party connects with its session token. Its WebRTC offer is answered here, by this
node's media session (server/media): the node relays and records both parties. Other
messages for the other party (mute state, script, chat) travel on
``session:<id>:<role>``. A party whose socket drops has ``media.rejoin_grace_seconds``
to come back (its recording continues in a new segment) before the session ends. With
``server.workers`` > 1 a socket that reached a sibling worker of the owner is relayed to
it first (ws_proxy.py).
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
from server.services.pairing.placement import session_channel
from server.services.runtime import Runtime
from server.web import ws_proxy
from server.web.session_messages import SessionParty, dispatch
from server.web.ws_common import open_socket, run_socket, send, send_error

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
# A session ends for everyone on these; any other close of a socket is a drop.
_ENDING = frozenset({"peer_left", "session_ended"})


@routes.get("/ws/session/{session_id}")
@public  # admitted by the session token, checked below
async def session_socket(request: web.Request) -> web.StreamResponse:
    # No Origin check here: the page that opens this socket is served by whichever node
    # the party reached, and no cookie admits anyone; the token does.
    relayed = await ws_proxy.relay_to_owner(request)
    if relayed is not None:
        return relayed  # the session ran on the sibling worker that owns it
    rt = request.app[RUNTIME]
    socket = open_socket(request)
    await socket.prepare(request)
    try:
        grant = session_tokens.verify(rt.protector, request.query.get("token", ""), now=time.time())
        if grant.session_id != request.match_info["session_id"]:
            raise InvalidInput(
                "session_mismatch", "Token is for another session.", "凭证与会话不符。"
            )
    except DomainError as exc:
        await send_error(socket, exc)
        await socket.close(code=4401, message=b"unauthorised")
        return socket
    role = Party(grant.role)
    other = role.other
    session_id = grant.session_id
    joined = False
    ended = False
    generation = 0

    async def announce() -> None:
        # Recorded and announced only once subscribed: whichever party arrives second
        # tells the first, who is by then certain to be listening.
        nonlocal joined, generation
        try:
            both = await rt.placer.party_joined(grant.session_id, role)
        except DomainError as exc:
            await send_error(socket, exc)
            await socket.close(code=4404, message=b"session not found")
            return
        joined = True
        generation, back = rt.media.claim(session_id, role)
        await send(
            socket,
            {
                "type": "joined",
                "session_id": session_id,
                "role": role,
                "rejoined": back,
                "ice_servers": rt.media.ice_servers(f"{role}:{grant.party}"),
                "rejoin_grace_seconds": rt.config.media.rejoin_grace_seconds,
            },
        )
        desk, screen = await rt.witnessing.views(session_id)
        for message in [desk] if role is Party.WITNESS else screen:
            await send(socket, message)
        if both:
            await send(socket, {"type": "peer_joined", "role": other})
            await rt.queue.publish(
                session_channel(grant.session_id, other), {"type": "peer_joined", "role": role}
            )

    party = SessionParty(rt, socket, session_id, role, grant.party)

    async def on_client(data: dict[str, Any]) -> None:
        await dispatch(party, data)

    async def on_channel(_channel: str, message: dict[str, Any]) -> None:
        nonlocal ended
        await send(socket, message)
        if message.get("type") in _ENDING:
            ended = True
            await socket.close()

    rt.metrics.live_sessions.inc()
    try:
        await run_socket(
            socket,
            backend=rt.queue,
            channels=[session_channel(grant.session_id, role)],
            on_client=on_client,
            on_channel=on_channel,
            on_subscribed=announce,
        )
    finally:
        rt.metrics.live_sessions.dec()
        if joined:
            rt.media.detach(_after_leaving(rt, session_id, role, generation, ended=ended))
    return socket


async def _after_leaving(
    rt: Runtime, session_id: str, role: str, generation: int, *, ended: bool
) -> None:
    """A party's socket is gone. If the session ended, close its media; otherwise give the
    party the grace period to rejoin (its recording segment is closed meanwhile)."""
    if ended:
        await rt.media.end(session_id, "session_ended")
        return

    async def expire() -> None:
        # Not back in time: the session ends as before media existed (investor to the
        # head of the queue, witness to not-ready) and its recordings are closed.
        await rt.placer.abort(session_id, reason=f"{role}_left", left_role=role)
        await rt.media.end(session_id, f"{role}_left")

    if not await rt.media.party_left(
        session_id, role, generation, reason="socket_closed", on_expiry=expire
    ):
        return  # a newer socket of the party already took over
    await rt.queue.publish(
        session_channel(session_id, Party(role).other),
        {"type": "peer_away", "role": role, "grace_seconds": rt.config.media.rejoin_grace_seconds},
    )
