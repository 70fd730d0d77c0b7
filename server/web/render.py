"""Page rendering with what every template needs (the signed-in staff member)."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from server.http.keys import CURRENT_STAFF


def render(
    template: str, request: web.Request, context: dict[str, Any] | None = None, *, status: int = 200
) -> web.Response:
    # Not aiohttp_jinja2's context processors: they store under a plain-string request key.
    ctx = {"current_staff": request.get(CURRENT_STAFF), **(context or {})}
    return aiohttp_jinja2.render_template(template, request, ctx, status=status)
