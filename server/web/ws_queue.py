"""The queue over WebSockets: investors wait and see their place; witnesses go ready and
take offers (A7, A17.3). Each socket may be on any node; messages cross nodes via pub/sub.
"""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

from server.domain.application import ApplicationState
from server.domain.errors import InvalidInput
from server.domain.pairing import WitnessState
from server.domain.staff import Role
from server.http.access import allow, current_investor, current_staff, investor_only
from server.http.keys import RUNTIME
from server.services.applications import application_state
from server.services.intake import holder
from server.services.pairing.queueing import QUEUE_CHANGED, investor_channel, witness_channel
from server.web.ws_common import check_ws_origin, open_socket, run_socket, send
from server.web.ws_frames import text_field

routes = web.RouteTableDef()


@routes.post("/api/v1/investor/application/queue")
@investor_only
async def join_queue(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    application_id = current_investor(request).application_id
    # Issue 16: a recent pre-call check that did not fail, when required. Only here: a
    # socket's re-join after a reload or a dropped call needs no new check.
    await rt.network_checks.require_passed(application_id)
    # A20–A22: the desk shows the account system's answer as of now, not of intake.
    await holder.refresh_precheck(
        db=rt.db, accounts=rt.accounts, protector=rt.protector, application_id=application_id
    )
    await rt.pairing.join_queue(application_id)
    return web.json_response(await rt.pairing.investor_status(application_id))


@routes.delete("/api/v1/investor/application/queue")
@investor_only
async def leave_queue(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    application_id = current_investor(request).application_id
    await rt.pairing.leave_queue(application_id)
    return web.json_response(await rt.pairing.investor_status(application_id))


@routes.get("/ws/investor")
@investor_only
async def investor_socket(request: web.Request) -> web.StreamResponse:
    check_ws_origin(request)
    rt = request.app[RUNTIME]
    application_id = current_investor(request).application_id
    # A read (issue 21: every investor's socket took SQLite's write lock for this).
    queued = await application_state(rt.db, application_id) is ApplicationState.QUEUED
    if queued:
        # A reload or short network loss: the place is still held (heartbeat grace).
        if not await rt.pairing.investor_heartbeat(application_id):
            await rt.pairing.join_queue(application_id)
    socket = open_socket(request)
    await socket.prepare(request)

    async def greet() -> None:
        # After subscribing, so a match made meanwhile is either here or on the channel.
        await send(
            socket,
            {
                **await rt.pairing.investor_status(application_id),
                "heartbeat_seconds": rt.config.pairing.heartbeat_seconds,
            },
        )
        pending = await rt.placer.open_session_for(role="investor", party=application_id)
        if pending is not None:
            await send(socket, pending)

    async def on_client(data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "ping":
            await rt.pairing.investor_heartbeat(application_id)
            await send(socket, await rt.pairing.investor_status(application_id))
        elif kind == "leave":
            await rt.pairing.leave_queue(application_id)
            await send(socket, await rt.pairing.investor_status(application_id))
        else:
            raise InvalidInput("unknown_message", "Unknown message type.", "未知的消息类型。")

    async def on_channel(channel: str, message: dict[str, Any]) -> None:
        if channel == QUEUE_CHANGED:
            await send(socket, await rt.pairing.investor_status(application_id))
        else:
            await send(socket, message)

    # Presence is proven by the page's own pings (its code is running), not by the socket
    # merely being open: see docs/pairing.md.
    await run_socket(
        socket,
        backend=rt.queue,
        channels=[investor_channel(application_id), QUEUE_CHANGED],
        on_client=on_client,
        on_channel=on_channel,
        on_subscribed=greet,
    )
    return socket


def _presence_message(state: WitnessState, queue_length: int) -> dict[str, Any]:
    return {"type": "state", "state": state.value, "queue_length": queue_length}


def _hello(rt: Any) -> dict[str, Any]:
    return {"type": "hello", "heartbeat_seconds": rt.config.pairing.heartbeat_seconds}


@routes.get("/ws/witness")
@allow(Role.WITNESS)
async def witness_socket(request: web.Request) -> web.StreamResponse:
    check_ws_origin(request)
    rt = request.app[RUNTIME]
    staff = current_staff(request)
    presence = await rt.pairing.witness_connect(staff.id)
    socket = open_socket(request)
    await socket.prepare(request)

    async def greet() -> None:
        await send(socket, _hello(rt))
        await send(socket, _presence_message(presence.state, await rt.pairing.queue_length()))
        if presence.state is WitnessState.BUSY:
            pending = await rt.placer.open_session_for(role="witness", party=str(staff.id))
            if pending is not None:
                await send(socket, pending)

    async def state_update() -> None:
        current = await rt.queue.get_witness(staff.id)
        state = current.state if current else WitnessState.OFFLINE
        await send(socket, _presence_message(state, await rt.pairing.queue_length()))

    async def on_client(data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "ping":
            await rt.pairing.witness_heartbeat(staff.id)
            await state_update()
        elif kind == "ready":
            await rt.pairing.witness_ready(staff.id, actor=staff.username)
            await state_update()
        elif kind == "not_ready":
            await rt.pairing.witness_not_ready(staff.id, actor=staff.username)
            await state_update()
        elif kind == "accept":
            placement = await rt.placer.accept(staff.id, text_field(data, "offer_id"))
            del placement  # the "matched" message reaches this socket through the channel
        elif kind == "decline":
            await rt.pairing.decline(staff.id, text_field(data, "offer_id"))
            await state_update()
        elif kind == "end":
            await rt.placer.end_by_witness(staff.id, text_field(data, "session_id"))
            await state_update()
        else:
            raise InvalidInput("unknown_message", "Unknown message type.", "未知的消息类型。")

    async def on_channel(channel: str, message: dict[str, Any]) -> None:
        if channel == QUEUE_CHANGED:
            await state_update()
        else:
            await send(socket, message)
            if message.get("type") in ("offer_closed", "peer_left", "matched"):
                await state_update()

    try:
        await run_socket(
            socket,
            backend=rt.queue,
            channels=[witness_channel(staff.id), QUEUE_CHANGED],
            on_client=on_client,
            on_channel=on_channel,
            on_subscribed=greet,
        )
    finally:
        # A closed console is offline at once unless it is in a call; a reload comes back
        # not-ready. An open offer is withdrawn and the investor keeps their place.
        current = await rt.queue.get_witness(staff.id)
        if current is not None and current.state not in (WitnessState.BUSY, WitnessState.WRAP_UP):
            with contextlib.suppress(Exception):
                await rt.queue.remove_witness(staff.id)
                await rt.queue.publish(QUEUE_CHANGED, {"reason": "witness_left"})
    return socket
