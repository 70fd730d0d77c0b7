"""An investor going through intake over the JSON API, as the page does (shared by tests)."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

API = "/api/v1/investor"
PHONE = "13800138000"
# In the sandbox registry (server/adapters/identity_registry.py).
ZHANG_SAN = {
    "name": "张三",
    "document_type": "resident_id",
    "id_number": "11010519491231002X",
    "sex": "F",
    "birth_date": "1949-12-31",
    "valid_from": "2015-06-01",
    "valid_until_long_term": True,
    "nationality": "CHN",
    "address": "北京市朝阳区建国路88号",
    "occupation": "retired",
    "email": "zhang@example.cn",
}


def jpeg(width: int = 800, height: int = 500, color: str = "#3a6") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "JPEG")
    return buf.getvalue()


class Investor:
    """A signed-in investor talking to the API like the page does."""

    def __init__(self, client: Any, csrf: str) -> None:
        self.client = client
        self.csrf = csrf

    def _h(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf, **(extra or {})}

    async def put(self, path: str, body: Any) -> Any:
        return await self.client.put(f"{API}{path}", json=body, headers=self._h())

    async def post(self, path: str, body: Any | None = None) -> Any:
        return await self.client.post(f"{API}{path}", json=body or {}, headers=self._h())

    async def upload(self, kind: str, data: bytes, ctype: str = "image/jpeg") -> Any:
        return await self.client.put(
            f"{API}/application/documents/{kind}",
            data=io.BytesIO(data),
            headers=self._h({"Content-Type": ctype}),
        )

    async def app(self) -> dict[str, Any]:
        resp = await self.client.get(f"{API}/application")
        assert resp.status == 200
        return (await resp.json())["application"]  # type: ignore[no-any-return]


async def sign_in(client: Any, phone: str = PHONE) -> tuple[Investor, dict[str, Any]]:
    sent = await client.post(f"{API}/otp", json={"phone": phone})
    assert sent.status == 202, await sent.text()
    code = (await sent.json())["sandbox_code"]
    resp = await client.post(f"{API}/session", json={"phone": phone, "code": code})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    return Investor(client, body["csrf_token"]), body


async def complete_intake(inv: Investor, identity: dict[str, Any] = ZHANG_SAN) -> None:
    assert (await inv.put("/application/identity", identity)).status == 200
    for kind in ("id_front", "id_back", "frontal_photo"):
        assert (await inv.upload(kind, jpeg())).status == 200
    q = await (await inv.client.get(f"{API}/questionnaire")).json()
    answers = {item["id"]: [item["options"][0]["id"]] for item in q["questions"]}
    assert (await inv.put("/application/suitability", {"answers": answers})).status == 200
    doc = await (await inv.client.get(f"{API}/disclosure")).json()
    ack = await inv.post(
        "/application/disclosure", {"version": doc["version"], "scrolled_to_end": True}
    )
    assert ack.status == 200, await ack.text()


def skip_reading_time(app: Any) -> None:
    """The disclosure's minimum reading time is a product rule; tests should not wait."""
    import dataclasses

    from server.http.keys import RUNTIME

    rt = app[RUNTIME]
    rt.disclosure = dataclasses.replace(rt.disclosure, min_read_seconds=0)


async def verified_investor(client: Any, phone: str, identity: dict[str, Any]) -> Investor:
    """A new investor through intake to identity_verified."""
    skip_reading_time(client.app)
    investor, _ = await sign_in(client, phone)
    await complete_intake(investor, identity)
    resp = await investor.post("/application/submit")
    assert resp.status == 200, await resp.text()
    return investor
