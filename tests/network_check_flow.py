"""The pre-call check (issue 16) over the API as the page does it, with an aiortc client
in place of the browser: a data channel that answers pings, a send-only test video."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from tests.intake_flow import API, Investor
from tests.media_client import PatternTrack


class ProbeClient:
    def __init__(
        self, investor: Investor, *, send_video: bool = True, echo: bool = True, fill: bool = True
    ) -> None:
        self.investor = investor
        self.send_video = send_video
        self.echo = echo
        self.fill = fill
        self._filler: asyncio.Task[None] | None = None
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.result: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pings = 0

    async def offer(self) -> str:
        channel = self.pc.createDataChannel("probe")

        @channel.on("message")
        def on_message(message: str) -> None:
            data = json.loads(message)
            if data["type"] == "ping":
                self.pings += 1
                if self.echo:
                    channel.send(json.dumps({"type": "pong", "seq": data["seq"]}))
            elif data["type"] == "result" and not self.result.done():
                self.result.set_result(data)

        @channel.on("open")
        def on_open() -> None:
            if self.fill:
                self._filler = asyncio.create_task(self._send_fill(channel))

        if self.send_video:
            self.pc.addTransceiver(PatternTrack(), direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def start(self) -> Any:
        """POST the offer; the raw response (the caller checks its status)."""
        return await self.investor.post(
            "/application/network-check/probe", {"sdp": await self.offer()}
        )

    async def connect(self, started: dict[str, Any]) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=started["sdp"], type="answer"))

    async def _send_fill(self, channel: Any) -> None:
        # As the page: ~1 Mbit/s of filler, paced, while the result is awaited.
        chunk = bytes(8192)
        while channel.readyState == "open" and not self.result.done():
            if channel.bufferedAmount < 65536:
                channel.send(chunk)
            await asyncio.sleep(0.06)

    async def close(self) -> None:
        if self._filler is not None:
            self._filler.cancel()
        await self.pc.close()


async def run_probe(investor: Investor, **kw: Any) -> dict[str, Any]:
    """One test connection to its end: the result message the node sends."""
    client = ProbeClient(investor, **kw)
    try:
        resp = await client.start()
        assert resp.status == 201, await resp.text()
        await client.connect(await resp.json())
        return await asyncio.wait_for(client.result, 20)
    finally:
        with contextlib.suppress(Exception):
            await client.close()


async def post_check(investor: Investor, token: str | None, **client: Any) -> Any:
    return await investor.post(
        "/application/network-check",
        {"token": token, "camera_ok": True, "microphone_ok": True, "client": client},
    )


async def pass_network_check(investor: Investor) -> dict[str, Any]:
    """Probe and store: the stored check (for flows with require_network_check on)."""
    result = await run_probe(investor)
    resp = await post_check(investor, result["token"], candidate_type="host", protocol="udp")
    assert resp.status == 201, await resp.text()
    return (await resp.json())["check"]  # type: ignore[no-any-return]


async def network_check_info(investor: Investor) -> dict[str, Any]:
    resp = await investor.client.get(f"{API}/application/network-check")
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]
