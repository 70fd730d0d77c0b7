"""WebSocket plumbing shared by the investor, witness and session sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from server.domain.errors import DomainError, Forbidden
from server.http.keys import SOCKETS
from server.queue.base import QueueBackend

log = logging.getLogger(__name__)

MAX_MESSAGE = 64 * 1024  # signalling (SDP) fits easily; anything larger is abuse


def check_ws_origin(request: web.Request) -> None:
    """Browsers send Origin on WebSocket upgrades and cookies ride along: refuse a socket
    opened from another site (cross-site WebSocket hijacking)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise Forbidden("origin_mismatch", "Cross-site request refused.", "拒绝跨站请求。")


async def send(socket: web.WebSocketResponse, message: dict[str, Any]) -> None:
    if not socket.closed:
        await socket.send_str(json.dumps(message, ensure_ascii=False))


async def send_error(socket: web.WebSocketResponse, exc: DomainError) -> None:
    await send(socket, {"type": "error", "error": exc.to_dict()})


def open_socket(request: web.Request) -> web.WebSocketResponse:
    socket = web.WebSocketResponse(heartbeat=20, max_msg_size=MAX_MESSAGE)
    request.app[SOCKETS].add(socket)
    return socket


async def close_all(app: web.Application) -> None:
    """on_shutdown: aiohttp would otherwise wait for every socket's handler to end."""
    sockets: weakref.WeakSet[web.WebSocketResponse] = app[SOCKETS]
    for socket in list(sockets):
        with contextlib.suppress(Exception):
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


async def run_socket(
    socket: web.WebSocketResponse,
    *,
    backend: QueueBackend,
    channels: list[str],
    on_client: Callable[[dict[str, Any]], Awaitable[None]],
    on_channel: Callable[[str, dict[str, Any]], Awaitable[None]],
    tick: Callable[[], Awaitable[None]] | None = None,
    tick_seconds: float = 10.0,
    on_subscribed: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Pump client messages and channel messages until the socket closes.

    Channel messages come from whichever node published them (the backend's pub/sub).
    ``on_subscribed`` runs once the subscription is live: announce yourself or send the
    initial state there, so nothing published in reply can be missed.
    """
    async with await backend.subscribe(*channels) as sub:
        if on_subscribed is not None:
            await on_subscribed()

        async def pump_channel() -> None:
            async for channel, message in sub:
                await on_channel(channel, message)

        async def ticker(beat: Callable[[], Awaitable[None]]) -> None:
            while True:
                await asyncio.sleep(tick_seconds)
                await beat()

        tasks = [asyncio.create_task(pump_channel())]
        if tick is not None:
            tasks.append(asyncio.create_task(ticker(tick)))
        try:
            async for msg in socket:
                if msg.type is not WSMsgType.TEXT:
                    continue
                if len(msg.data) > MAX_MESSAGE:
                    await socket.close(code=1009, message=b"message too large")
                    break
                try:
                    data = json.loads(msg.data)
                except json.JSONDecodeError:
                    await send(socket, {"type": "error", "error": {"code": "bad_json"}})
                    continue
                if not isinstance(data, dict):
                    continue
                try:
                    await on_client(data)
                except DomainError as exc:
                    await send_error(socket, exc)
                if any(t.done() for t in tasks):
                    break
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
