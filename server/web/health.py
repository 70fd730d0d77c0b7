"""Liveness/readiness and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from server.domain.loop_lag import LagSummary
from server.http.access import public
from server.http.keys import RUNTIME
from server.services.health import database_status

routes = web.RouteTableDef()


@routes.get("/healthz")
@public
async def healthz(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    database = await database_status(rt.engine)
    body = {
        "status": "ok" if database == "ok" else "degraded",
        "database": database,
        "database_backend": rt.engine.dialect.name,
        "queue": rt.config.queue.backend,
        "node_id": rt.config.node_id,
        "loop_lag_ms": _lag_ms(rt.loop_probe.summary()),
    }
    return web.json_response(body, status=200 if database == "ok" else 503)


def _lag_ms(summary: LagSummary) -> dict[str, float | int]:
    """How late the event loop woke in the last minute (services/loop_probe.py)."""
    return {
        "p99": round(summary.p99 * 1000, 1),
        "max": round(summary.max * 1000, 1),
        "samples": summary.samples,
    }


@routes.get("/metrics")
@public
async def metrics(request: web.Request) -> web.Response:
    # Prometheus text format; scrape from inside the agency's network only (README).
    payload = generate_latest(request.app[RUNTIME].metrics.registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})
