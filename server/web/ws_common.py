"""WebSocket plumbing shared by the investor, witness and session sockets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import traceback
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

from server.domain.errors import DomainError, Forbidden
from server.http.keys import SOCKETS
from server.queue.base import QueueBackend
from server.web.ws_frames import bad_message, read_frame

log = logging.getLogger(__name__)

MAX_MESSAGE = 64 * 1024  # signalling (SDP) fits easily; anything larger is abuse
_HANDLER_FAILED = bad_message("The message could not be handled.", "无法处理该消息。")


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


async def _answer(
    socket: web.WebSocketResponse,
    frame: WSMessage,
    on_client: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """One frame from the client: read, handled, or answered with an error. The socket
    stays open whatever the frame held; only a frame over MAX_MESSAGE closes it."""
    try:
        await on_client(read_frame(frame))
    except DomainError as exc:
        await send_error(socket, exc)
    except Exception as exc:
        # A handler's bug, not the client's: one line naming where, never the message
        # (it may hold personal data), and the same error reply as a malformed frame.
        where = traceback.extract_tb(exc.__traceback__)[-1]
        log.error(
            "socket message handler failed: %s at %s:%s in %s",
            type(exc).__name__,
            where.filename,
            where.lineno,
            where.name,
        )
        await send_error(socket, _HANDLER_FAILED)


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
            async for frame in socket:
                if frame.type is WSMsgType.ERROR:
                    break  # e.g. over MAX_MESSAGE: aiohttp has closed it with 1009
                if frame.type is WSMsgType.TEXT and len(frame.data) > MAX_MESSAGE:
                    await socket.close(code=WSCloseCode.MESSAGE_TOO_BIG, message=b"too large")
                    break
                await _answer(socket, frame, on_client)
                if any(t.done() for t in tasks):
                    break
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
