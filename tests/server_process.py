"""An investor and a witness on a server started as its own process, reached over
aiohttp.ClientSession and the server's URL (shared by the multi-process tests)."""

from __future__ import annotations

import re

import aiohttp

from tests.intake_flow import ZHANG_SAN, jpeg


async def investor_through_intake(s: aiohttp.ClientSession, base: str) -> str:
    """An investor through intake and into the queue, first in line; their CSRF token."""
    api = f"{base}/api/v1/investor"
    async with s.post(f"{api}/otp", json={"phone": "13800138000"}) as r:
        code = (await r.json())["sandbox_code"]
    async with s.post(f"{api}/session", json={"phone": "13800138000", "code": code}) as r:
        csrf = (await r.json())["csrf_token"]
    h = {"X-CSRF-Token": csrf}
    async with s.put(f"{api}/application/identity", json=ZHANG_SAN, headers=h) as r:
        assert r.status == 200, await r.text()
    for kind in ("id_front", "id_back", "frontal_photo"):
        async with s.put(
            f"{api}/application/documents/{kind}",
            data=jpeg(),
            headers={**h, "Content-Type": "image/jpeg"},
        ) as r:
            assert r.status == 200, await r.text()
    async with s.get(f"{api}/questionnaire") as r:
        q = await r.json()
    answers = {item["id"]: [item["options"][0]["id"]] for item in q["questions"]}
    async with s.put(f"{api}/application/suitability", json={"answers": answers}, headers=h) as r:
        assert r.status == 200
    async with s.get(f"{api}/disclosure") as r:
        version = (await r.json())["version"]
    body = {"version": version, "scrolled_to_end": True}
    async with s.post(f"{api}/application/disclosure", json=body, headers=h) as r:
        assert r.status == 200, await r.text()
    async with s.post(f"{api}/application/submit", json={}, headers=h) as r:
        assert (await r.json())["application"]["state"] == "identity_verified"
    async with s.post(f"{api}/application/queue", json={}, headers=h) as r:
        assert (await r.json())["position"] == 1
    return csrf


async def witness_login(s: aiohttp.ClientSession, base: str) -> None:
    """wang.wei (added with the CLI, password "correct horse battery") logs in."""
    async with s.get(f"{base}/staff/login", headers={"Accept": "text/html"}) as r:
        token = re.search(r'name="csrf_token" value="([^"]+)"', await r.text())
    assert token
    form = {"username": "wang.wei", "password": "correct horse battery", "csrf_token": token[1]}
    async with s.post(f"{base}/staff/login", data=form, allow_redirects=False) as r:
        assert r.status == 302
