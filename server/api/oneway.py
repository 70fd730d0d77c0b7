"""The investor's one-way video API (A18): may I record alone, and start an attempt.

The attempt itself runs over ``/ws/oneway/{session_id}`` (server/web/ws_oneway.py). There
is no way to send a recorded file (A18.5): media arrive only as a live WebRTC stream.
"""

from __future__ import annotations

from aiohttp import web

from server.api.investor import PREFIX, _limit_writes
from server.api.schemas import OneWayOffer, OneWayStarted, answer
from server.http.access import current_investor, investor_only
from server.http.keys import RUNTIME
from server.services.oneway.attempts import REFUSALS

routes = web.RouteTableDef()


@routes.get(f"{PREFIX}/application/one-way")
@investor_only
async def get_offer(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    offer = await rt.oneway.offer(current_investor(request).application_id)
    en, zh = REFUSALS.get(offer.reason or "", (None, None))
    return answer(OneWayOffer(**offer.as_dict(), message=en, message_zh=zh))


@routes.post(f"{PREFIX}/application/one-way")
@investor_only
async def start(request: web.Request) -> web.Response:
    await _limit_writes(request)
    rt = request.config_dict[RUNTIME]
    started = await rt.oneway.start(current_investor(request).application_id)
    return answer(
        OneWayStarted(
            session_id=started.session_id,
            attempt=started.number,
            token=started.token,
            socket_url=f"/ws/oneway/{started.session_id}",
            instructions=len(started.sequence),
        ),
        status=201,
    )
