"""Session-socket hand-off between the workers of one machine (``server.workers`` > 1).

Every worker listens on the one public port and the kernel picks which one accepts a
connection, so a party's ``/ws/session/{id}`` may land on a worker that does not own the
session's media. That worker then relays the socket, frame for frame, to the owner's
loopback port (same path and query); the owner checks the token and runs the session as
if the party had reached it directly. Either side closing closes the other.

A socket is relayed at most once: one that arrived on this worker's loopback port, or
carries the relay header, is always handled here. An owner on another machine, or not
alive, is left alone: the socket is handled here as without workers (an offer is answered
``wrong_node``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from server.domain.errors import DomainError
from server.http.keys import RUNTIME
from server.queue.base import NodeInfo
from server.services.pairing import session_tokens
from server.services.witnessing import handoff
from server.web.ws_common import open_socket

log = logging.getLogger(__name__)

# Set by the relaying worker, on its request to the owner and on its answer to the party
# (which worker carried the socket: for operators and tests). A party sending it only
# keeps its own socket from being relayed.
RELAYED_BY = "X-Witness-Relayed-By"
CONNECT_TIMEOUT_SECONDS = 5.0
# Codes a close frame may not carry (RFC 6455 7.4.1): a side that vanished is "going away".
_UNSENDABLE = frozenset({1005, 1006, 1015})


def _sendable(code: int | None) -> int:
    if code is None:
        return WSCloseCode.OK
    return WSCloseCode.GOING_AWAY if code in _UNSENDABLE else code


def arrived_internally(request: web.Request, internal_port: int | None) -> bool:
    if RELAYED_BY in request.headers:
        return True
    transport = request.transport
    if transport is None or internal_port is None:
        return False
    sockname: tuple[str, int] | None = transport.get_extra_info("sockname")
    return sockname is not None and sockname[1] == internal_port


async def relay_to_owner(request: web.Request) -> web.WebSocketResponse | None:
    """Relay the session socket to its owner if that is a sibling worker; None: handle it
    here. Only a valid token for this session is relayed (a MAC check, no I/O), so junk
    costs neither a database read nor a loopback connection; the owner checks it again."""
    rt = request.app[RUNTIME]
    me = rt.placer.self_node
    if not me.internal_url or arrived_internally(request, rt.config.internal_port):
        return None
    session_id = request.match_info["session_id"]
    try:
        grant = session_tokens.verify(rt.protector, request.query.get("token", ""), now=time.time())
    except DomainError:
        return None
    if grant.session_id != session_id:
        return None
    owner = await handoff.session_owner_nearby(
        db=rt.db, backend=rt.queue, session_id=session_id, me=me
    )
    if owner is None:
        return None
    return await _relay(request, owner, me)


async def _relay(
    request: web.Request, owner: NodeInfo, me: NodeInfo
) -> web.WebSocketResponse | None:
    target = owner.internal_url + str(request.rel_url)
    client = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_SECONDS)
    )
    try:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                # What the owner sends is passed on unlimited, as it would be sent directly;
                # the party's own messages are limited on its socket (MAX_MESSAGE).
                upstream = await client.ws_connect(
                    target, headers={RELAYED_BY: me.node_id}, max_msg_size=0
                )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            # The owner just stopped, say: handled here, the party is told what it
            # would be told without workers, and its page tries again.
            log.warning(
                "session socket hand-off failed; handling it here",
                extra={"owner": owner.node_id, "error": type(exc).__name__},
            )
            return None
        socket = open_socket(request)
        socket.headers[RELAYED_BY] = me.node_id
        try:
            await socket.prepare(request)
            await _pump(socket, upstream)
        finally:
            await upstream.close(code=_sendable(socket.close_code))
            await socket.close(code=_sendable(upstream.close_code))
        return socket
    finally:
        await client.close()


async def _copy(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    """Text and binary messages from ``source`` to ``sink`` until ``source`` closes."""
    async for msg in source:
        if msg.type is WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif msg.type is WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        elif msg.type is WSMsgType.ERROR:
            return


async def _pump(party: web.WebSocketResponse, owner: aiohttp.ClientWebSocketResponse) -> None:
    """Text, binary and close both ways until either side closes."""
    tasks = [asyncio.create_task(_copy(party, owner)), asyncio.create_task(_copy(owner, party))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            # A send to a side that just closed fails; the closes that follow settle it.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
