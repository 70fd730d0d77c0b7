"""Small helpers shared by HTTP and browser tests (real objects, no mocks)."""

from __future__ import annotations

import asyncio
import collections
import re
import socket
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import av
from aiohttp.test_utils import TestClient

from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.services import staff as staff_service

PASSWORD = "correct horse battery"
HTML = {"Accept": "text/html"}


async def add_staff(
    client: TestClient,  # type: ignore[type-arg]
    username: str,
    roles: set[Role],
    *,
    password: str = PASSWORD,
    **fields: Any,
) -> None:
    rt = client.app[RUNTIME]
    if Role.WITNESS in roles:
        fields = {
            "employee_number": f"E{abs(hash(username)) % 10**6:06d}",
            "licence_number": "S0850120090042",
            "has_labour_contract": True,
            "training_passed_on": date(2026, 1, 5),
            **fields,
        }
    async with rt.db.begin() as tx:
        await staff_service.create_staff(
            tx=tx,
            new=staff_service.NewStaff(
                username=username,
                display_name=username.title(),
                password=password,
                roles=frozenset(roles),
                **fields,
            ),
            protector=rt.protector,
            actor="test",
        )


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no csrf_token in page"
    return match.group(1)


async def login(
    client: TestClient,  # type: ignore[type-arg]
    username: str,
    password: str = PASSWORD,
) -> Any:
    page = await client.get("/staff/login", headers=HTML)
    token = csrf_from(await page.text())
    return await client.post(
        "/staff/login",
        data={"username": username, "password": password, "csrf_token": token, "next": "/staff/"},
        headers=HTML,
        allow_redirects=False,
    )


async def wait_for(predicate: Callable[[], Any], within: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def decode_all(path: Path) -> dict[str, int]:
    """Frames of a recording decoded end to end, by kind; and the audio decoded, in ms
    ("audio_ms"), and how long most of its frames are ("audio_frame_ms": one Opus packet
    decodes to one frame, so that is the packet duration the browser sent)."""
    counts = {"video": 0, "audio": 0, "audio_ms": 0, "audio_frame_ms": 0}
    lengths: collections.Counter[int] = collections.Counter()
    audio_ms = 0.0
    with av.open(str(path)) as container:
        for frame in container.decode(*container.streams.video, *container.streams.audio):
            if isinstance(frame, av.VideoFrame):
                counts["video"] += 1
                continue
            counts["audio"] += 1
            frame_ms = frame.samples * 1000 / frame.sample_rate
            audio_ms += frame_ms
            lengths[round(frame_ms)] += 1
    counts["audio_ms"] = round(audio_ms)
    if lengths:
        counts["audio_frame_ms"] = lengths.most_common(1)[0][0]
    return counts
