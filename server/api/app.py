"""The API sub-app, mounted at /api/v1 by server/app.py."""

from __future__ import annotations

from aiohttp import web

from server.api import alerts, callbacks, investor, oneway, openapi, retrieval, review, screenings
from server.api.middleware import api_access

PREFIX = "/api/v1"


def create_api_app() -> web.Application:
    # The runtime lives on the parent app; handlers reach it through request.config_dict.
    api = web.Application(middlewares=[api_access])
    api.router.add_routes(investor.routes)
    api.router.add_routes(oneway.routes)
    api.router.add_routes(openapi.routes)
    api.router.add_routes(retrieval.routes)
    api.router.add_routes(review.routes)
    api.router.add_routes(callbacks.routes)
    api.router.add_routes(screenings.routes)
    api.router.add_routes(alerts.routes)
    return api
