"""The site's icon at /favicon.ico, where browsers look for it (issue 17: a 404 on every
page before). The pages also link it from base.html."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from server.http.access import public

ICON = Path(__file__).resolve().parents[2] / "static" / "favicon.ico"

routes = web.RouteTableDef()


@routes.get("/favicon.ico")
@public
async def favicon(request: web.Request) -> web.FileResponse:
    return web.FileResponse(
        ICON,
        headers={"Content-Type": "image/x-icon", "Cache-Control": "public, max-age=86400"},
    )
