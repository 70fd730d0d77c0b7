"""The application factory: builds the aiohttp Application from a Config."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from server.api.app import PREFIX as API_PREFIX
from server.api.app import create_api_app
from server.config import Config
from server.domain.session import SessionState
from server.http.access import access_of
from server.http.keys import RUNTIME, SOCKETS
from server.media import hooks
from server.services.runtime import open_runtime
from server.services.witnessing.recovery import recover
from server.store.models import utcnow
from server.web import (
    admin_pages,
    callback_pages,
    compliance_pages,
    favicon,
    health,
    investor_pages,
    review_pages,
    staff_pages,
    supervision_pages,
    witness_pages,
    ws_oneway,
    ws_queue,
    ws_session,
)
from server.web.middleware import (
    access_control,
    errors,
    make_forwarded_middleware,
    make_security_headers,
    request_context,
)
from server.web.ws_common import close_all

TEMPLATES = Path(__file__).resolve().parent / "web" / "templates"
log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent.parent / "static"


def _check_declared_access(app: web.Application) -> None:
    """Refuse to start if any handler forgot to declare who may call it."""
    missing = []
    for route in app.router.routes():  # a mounted sub-app's routes included
        if isinstance(route.resource, web.StaticResource):
            continue
        if access_of(route.handler) is None:
            missing.append(f"{route.method} {route.resource.canonical if route.resource else '?'}")
    if missing:
        raise RuntimeError(f"handlers without declared access: {', '.join(missing)}")


def create_app(config: Config) -> web.Application:
    app = web.Application(
        middlewares=[make_forwarded_middleware(config), request_context, errors, access_control],
        client_max_size=config.server.max_body_mb * 1024 * 1024,
    )

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_runtime(config) as rt:
            app[RUNTIME] = rt
            yield

    async def dispatcher_ctx(app: web.Application) -> AsyncIterator[None]:
        # Pairing runs in the background of every serving process (one acts at a time).
        dispatcher = app[RUNTIME].dispatcher
        task = asyncio.create_task(dispatcher.run_forever())
        yield
        dispatcher.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), 10)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def media_ctx(app: web.Application) -> AsyncIterator[None]:
        rt = app[RUNTIME]
        hooks.check_internals()  # an aiortc upgrade that breaks the tap stops start-up
        hooks.fast_media_datagrams()
        hooks.eager_receive()
        hooks.lean_rate_counter()
        hooks.restrict_host_addresses(list(config.media.host_addresses))

        started = utcnow()

        async def recover_once() -> None:
            others = {n.node_id for n in await rt.queue.live_nodes(now=time.time())}
            others.discard(config.node_id)
            result = await recover(
                rt.db,
                root=config.recordings_path,
                alive_nodes=others,
                end_session=lambda sid: rt.placer.abort(
                    sid,
                    reason="media_node_stopped",
                    left_role=None,
                    final_state=SessionState.INTERRUPTED,
                ),
                started_before=started,
            )
            if any(result.values()):
                log.warning("recovered after an unclean stop", extra=result)

        async def recover_until_done() -> None:
            # In the background, retried: a database that is down at start must not keep
            # the node from serving /healthz, nor lose the recordings left open.
            delay = 1.0
            while True:
                try:
                    await recover_once()
                    return
                except Exception:
                    log.exception("crash recovery failed; retrying in %.0f s", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

        recovery = asyncio.create_task(recover_until_done())
        yield
        recovery.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recovery
        await rt.oneway.close_all()
        await rt.media.close_all()

    async def loop_probe_ctx(app: web.Application) -> AsyncIterator[None]:
        # Event-loop lag for /metrics and /healthz (services/loop_probe.py).
        task = asyncio.create_task(app[RUNTIME].loop_probe.run_forever())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def risk_ctx(app: web.Application) -> AsyncIterator[None]:
        # A23: overdue alerts and time-based rules every risk.sweep_seconds; the alert
        # webhook when risk.webhook_url is set (services/compliance/).
        rt = app[RUNTIME]
        tasks = [asyncio.create_task(rt.risk.run_forever())]
        if config.risk.webhook_url:
            tasks.append(asyncio.create_task(rt.alert_webhook.run_forever()))
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(runtime_ctx)
    app.cleanup_ctx.append(loop_probe_ctx)
    app.cleanup_ctx.append(risk_ctx)
    app.cleanup_ctx.append(media_ctx)
    app.cleanup_ctx.append(dispatcher_ctx)
    app[SOCKETS] = weakref.WeakSet()
    app.on_shutdown.append(close_all)
    app.on_response_prepare.append(make_security_headers(config))

    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(default=True),
    )
    zone = config.zone

    def localtime(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        # Stored in UTC; shown in the agency's zone (config agency.timezone).
        if value is None:
            return ""
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(zone).strftime(fmt)

    env.filters["localtime"] = localtime
    env.globals["agency"] = config.agency

    app.router.add_routes(health.routes)
    app.router.add_routes(favicon.routes)
    app.router.add_routes(staff_pages.routes)
    app.router.add_routes(investor_pages.routes)
    app.router.add_routes(admin_pages.routes)
    app.router.add_routes(review_pages.routes)
    app.router.add_routes(callback_pages.routes)
    app.router.add_routes(compliance_pages.routes)
    app.router.add_routes(supervision_pages.routes)
    app.router.add_routes(ws_queue.routes)
    app.router.add_routes(ws_session.routes)
    app.router.add_routes(ws_oneway.routes)
    app.router.add_routes(witness_pages.routes)
    app.router.add_static("/static/", STATIC, name="static", append_version=False)
    app.add_subapp(API_PREFIX, create_api_app())
    _check_declared_access(app)
    return app
