"""Investor intake over HTTP: every step, every bad input, nothing changed by a refusal."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from server.http.keys import RUNTIME
from server.store.models import Application, AuditEntry, Document, IdentityCheck, utcnow
from tests.intake_flow import API, PHONE, ZHANG_SAN, complete_intake, jpeg, sign_in


@pytest.fixture
def fast_disclosure(client: Any) -> None:
    """Reading time is a product rule (content file); tests should not wait 10 s for it."""
    import dataclasses

    rt = client.app[RUNTIME]
    rt.disclosure = dataclasses.replace(rt.disclosure, min_read_seconds=0)


async def _counts(client: Any) -> tuple[int, int, int]:
    async with client.app[RUNTIME].db.begin() as s:
        return (
            await s.scalar(select(func.count()).select_from(Application)) or 0,
            await s.scalar(select(func.count()).select_from(Document)) or 0,
            await s.scalar(select(func.count()).select_from(AuditEntry)) or 0,
        )


async def test_new_investor_reaches_identity_verified(client: Any, fast_disclosure: None) -> None:
    inv, body = await sign_in(client)
    assert body["resumed"] is False and body["application"]["next_step"] == "identity"
    await complete_intake(inv)
    app = await inv.app()
    assert app["next_step"] == "check" and app["state"] == "draft"
    resp = await inv.post("/application/submit")
    assert resp.status == 200, await resp.text()
    app = (await resp.json())["application"]
    assert app["state"] == "identity_verified" and app["next_step"] == "ready"
    assert app["identity_check"]["result"] == "match"
    assert app["identity"]["id_number_masked"] == "110105********002X"
    assert set(app["documents"]) == {"id_front", "id_back", "frontal_photo"}
    assert app["suitability"]["level"] == "C1"
    async with client.app[RUNTIME].db.begin() as s:
        stored = await s.get(Application, app["id"])
        assert stored is not None and b"11010519491231002X" not in (stored.id_number_enc or b"")
        docs = (await s.scalars(select(Document))).all()
        root = client.app[RUNTIME].config.recordings_path
        import hashlib

        for d in docs:
            assert hashlib.sha256((root / d.path).read_bytes()).hexdigest() == d.sha256
        check = await s.scalar(select(IdentityCheck))
        assert check is not None and check.result == "match" and check.reference.startswith("SBX")


async def test_resume_with_same_phone(client: Any, fast_disclosure: None) -> None:
    inv, _ = await sign_in(client)
    assert (await inv.put("/application/identity", ZHANG_SAN)).status == 200
    first_id = (await inv.app())["id"]
    await client.delete(f"{API}/session", headers={"X-CSRF-Token": inv.csrf})
    assert (await client.get(f"{API}/application")).status == 401
    client.session.cookie_jar.clear()
    # Coming back later, even after the resend wait, resumes the same application.
    async with client.app[RUNTIME].db.begin() as s:
        from sqlalchemy import update

        from server.store.models import OtpChallenge

        await s.execute(update(OtpChallenge).values(created_at=utcnow() - timedelta(hours=1)))
    _inv2, body = await sign_in(client)
    assert body["resumed"] is True and body["application"]["id"] == first_id
    assert body["application"]["next_step"] == "id_images"


async def test_otp_wrong_expired_and_attempt_limit(client: Any) -> None:
    sent = await client.post(f"{API}/otp", json={"phone": PHONE})
    code = (await sent.json())["sandbox_code"]
    wrong = "000000" if code != "000000" else "111111"
    for left in (4, 3, 2, 1, 0):
        r = await client.post(f"{API}/session", json={"phone": PHONE, "code": wrong})
        body = await r.json()
        assert r.status == 400 and body["error"]["code"] == "otp_wrong"
        assert body["error"]["details"]["attempts_left"] == left
    # Voided after the last attempt, even with the right code.
    r = await client.post(f"{API}/session", json={"phone": PHONE, "code": code})
    assert r.status == 400 and (await r.json())["error"]["code"] == "otp_expired"


async def test_otp_resend_wait_and_phone_validation(client: Any) -> None:
    assert (await client.post(f"{API}/otp", json={"phone": "+86 138-0013-8000"})).status == 202
    again = await client.post(f"{API}/otp", json={"phone": PHONE})
    body = await again.json()
    assert again.status == 429 and body["error"]["code"] == "otp_resend_wait"
    assert int(again.headers["Retry-After"]) > 0 and "秒后" in body["error"]["message_zh"]
    bad = await client.post(f"{API}/otp", json={"phone": "12345"})
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "phone_invalid"
    not_json = await client.post(f"{API}/otp", data="phone=13800138000")
    assert not_json.status == 400


async def test_otp_rate_limit_per_phone(client: Any) -> None:
    from sqlalchemy import update

    from server.store.models import OtpChallenge

    for _ in range(5):
        assert (await client.post(f"{API}/otp", json={"phone": "13900139000"})).status == 202
        async with client.app[RUNTIME].db.begin() as s:  # skip the 60 s resend wait
            await s.execute(update(OtpChallenge).values(created_at=utcnow() - timedelta(minutes=2)))
    r = await client.post(f"{API}/otp", json={"phone": "13900139000"})
    assert r.status == 429 and (await r.json())["error"]["code"] == "rate_limited"


async def test_application_needs_session_and_csrf(client: Any) -> None:
    assert (await client.get(f"{API}/application")).status == 401
    _inv, _ = await sign_in(client)
    r = await client.put(f"{API}/application/identity", json=ZHANG_SAN)  # no CSRF header
    assert r.status == 403 and (await r.json())["error"]["code"] == "csrf_failed"
    forged = await client.get(f"{API}/application", headers={"Authorization": "Bearer forged"})
    assert forged.status == 401


async def test_bearer_token_for_mobile_apps(client: Any) -> None:
    sent = await (await client.post(f"{API}/otp", json={"phone": PHONE})).json()
    r = await client.post(
        f"{API}/session", json={"phone": PHONE, "code": sent["sandbox_code"], "want_token": True}
    )
    token = (await r.json())["token"]
    client.session.cookie_jar.clear()
    auth = {"Authorization": f"Bearer {token}"}
    # No CSRF token needed: a bearer token is not sent by browsers on their own.
    resp = await client.put(f"{API}/application/identity", json=ZHANG_SAN, headers=auth)
    assert resp.status == 200


BAD_IDENTITY = [
    ({"id_number": "110105194912310021"}, "id_number_check_digit"),
    ({"id_number": "110105199902300027", "birth_date": "1999-02-30"}, "date_invalid"),
    ({"id_number": "11010519990230002X"}, "id_number_birth_date"),
    ({"document_type": "passport"}, "document_type_not_accepted"),
    ({"name": "<script>alert(1)</script>"}, "name_invalid"),
    ({"valid_until_long_term": False, "valid_until": "2020-01-01"}, "document_expired"),
    ({"birth_date": "1949-12-30"}, "birth_date_mismatch"),
    ({"sex": "M"}, "sex_mismatch"),
    ({"address": "x"}, "address_invalid"),
    ({"occupation": "astronaut"}, "occupation_invalid"),
    ({"email": "not-an-email"}, "email_invalid"),
    ({"nationality": "USA"}, "nationality_mismatch"),
]


@pytest.mark.parametrize(("change", "code"), BAD_IDENTITY, ids=[c for _, c in BAD_IDENTITY])
async def test_bad_identity_refused_and_nothing_changed(
    client: Any, change: dict[str, Any], code: str
) -> None:
    inv, _ = await sign_in(client)
    before = await _counts(client)
    resp = await inv.put("/application/identity", {**ZHANG_SAN, **change})
    body = await resp.json()
    assert resp.status == 400, body
    assert body["error"]["code"] == code
    assert body["error"]["message"] and body["error"]["message_zh"]
    assert "11010519491231002X" not in await resp.text()
    assert await _counts(client) == before
    assert (await inv.app())["identity"] is None


async def test_underage_refused(client: Any) -> None:
    inv, _ = await sign_in(client)
    from datetime import date

    today = date.today()
    birth = date(today.year - 17, 1, 1)
    first17 = f"110101{birth:%Y%m%d}001"
    from server.domain.identity_document import check_character

    minor = {
        **ZHANG_SAN,
        "id_number": first17 + check_character(first17),
        "birth_date": birth.isoformat(),
        "sex": "M",
    }
    resp = await inv.put("/application/identity", minor)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "underage"


async def test_same_id_number_on_two_phones_refused(client: Any) -> None:
    inv, _ = await sign_in(client)
    assert (await inv.put("/application/identity", ZHANG_SAN)).status == 200
    client.session.cookie_jar.clear()
    other, _ = await sign_in(client, "13700137000")
    resp = await other.put("/application/identity", ZHANG_SAN)
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "id_number_in_use"


@pytest.mark.parametrize(
    ("data", "ctype", "code"),
    [
        (b"hello, I am not a picture", "image/jpeg", "image_type_not_allowed"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, "image/png", "image_corrupt"),
        (b"", "image/jpeg", "image_empty"),
    ],
    ids=["text-named-jpg", "fake-png", "empty"],
)
async def test_fake_images_refused(client: Any, data: bytes, ctype: str, code: str) -> None:
    inv, _ = await sign_in(client)
    before = await _counts(client)
    resp = await inv.upload("id_front", data, ctype)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == code
    assert await _counts(client) == before
    root = client.app[RUNTIME].config.recordings_path
    assert not list(root.rglob("*.jpg"))


async def test_oversized_image_refused(client: Any) -> None:
    inv, _ = await sign_in(client)
    big = jpeg(200, 200) + b"\x00" * (9 * 1024 * 1024)
    resp = await inv.upload("id_back", big)
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "image_too_large"


async def test_reupload_supersedes_and_keeps_the_first(client: Any) -> None:
    inv, _ = await sign_in(client)
    assert (await inv.upload("id_front", jpeg(color="#111"))).status == 200
    assert (await inv.upload("id_front", jpeg(color="#eee"))).status == 200
    async with client.app[RUNTIME].db.begin() as s:
        docs = (await s.scalars(select(Document).order_by(Document.created_at))).all()
    assert [d.active for d in docs] == [False, True]
    own = await client.get(f"{API}/application/documents/id_front")
    assert own.status == 200 and own.headers["Content-Type"] == "image/jpeg"
    import hashlib

    assert hashlib.sha256(await own.read()).hexdigest() == docs[1].sha256


async def test_unknown_document_kind_404(client: Any) -> None:
    inv, _ = await sign_in(client)
    assert (await inv.upload("../../etc/passwd", jpeg())).status == 404
    assert (await inv.upload("selfie", jpeg())).status == 404


async def test_suitability_errors(client: Any) -> None:
    inv, _ = await sign_in(client)
    r = await inv.put("/application/suitability", {"answers": {}})
    assert r.status == 400 and (await r.json())["error"]["code"] == "suitability_incomplete"
    r = await inv.put("/application/suitability", {"answers": "C5 please"})
    assert r.status == 400 and (await r.json())["error"]["code"] == "suitability_format"


async def test_disclosure_must_be_read(client: Any) -> None:
    inv, _ = await sign_in(client)
    doc = await (await client.get(f"{API}/disclosure")).json()
    not_scrolled = await inv.post(
        "/application/disclosure", {"version": doc["version"], "scrolled_to_end": False}
    )
    assert (await not_scrolled.json())["error"]["code"] == "disclosure_not_scrolled"
    old = await inv.post("/application/disclosure", {"version": "1999", "scrolled_to_end": True})
    assert (await old.json())["error"]["code"] == "disclosure_version_mismatch"
    quick = await inv.post(
        "/application/disclosure", {"version": doc["version"], "scrolled_to_end": True}
    )
    assert quick.status == 400 and (await quick.json())["error"]["code"] == "disclosure_too_quick"
    assert (await inv.app())["disclosure"] is None


async def test_submit_incomplete_refused(client: Any) -> None:
    inv, _ = await sign_in(client)
    assert (await inv.put("/application/identity", ZHANG_SAN)).status == 200
    r = await inv.post("/application/submit")
    body = await r.json()
    assert r.status == 400 and body["error"]["code"] == "intake_incomplete"
    assert "id_images" in body["error"]["details"]["missing"]
    assert (await inv.app())["state"] == "draft"


async def test_registry_mismatch_then_correct(client: Any, fast_disclosure: None) -> None:
    inv, _ = await sign_in(client)
    await complete_intake(inv, {**ZHANG_SAN, "name": "张叁"})
    r = await inv.post("/application/submit")
    app = (await r.json())["application"]
    assert app["state"] == "identity_failed" and app["next_step"] == "identity_failed"
    # Locked while failed; the investor corrects, which reopens the draft.
    assert (await inv.put("/application/identity", ZHANG_SAN)).status == 409
    assert (await inv.post("/application/correct")).status == 200
    assert (await inv.put("/application/identity", ZHANG_SAN)).status == 200
    app = (await (await inv.post("/application/submit")).json())["application"]
    assert app["state"] == "identity_verified"


async def test_registry_unavailable_never_verifies(client: Any, fast_disclosure: None) -> None:
    from server.domain.identity_document import check_character

    first17 = "11010519800101999"  # sequence 999: the sandbox's "registry timeout"
    person = {
        **ZHANG_SAN,
        "id_number": first17 + check_character(first17),
        "birth_date": "1980-01-01",
        "sex": "M",
    }
    inv, _ = await sign_in(client)
    await complete_intake(inv, person)
    r = await inv.post("/application/submit")
    body = await r.json()
    assert r.status == 503 and body["error"]["code"] == "identity_registry_unavailable"
    assert "稍后" in body["error"]["message_zh"]
    app = await inv.app()
    assert app["state"] == "submitted" and app["identity_check"]["result"] == "unavailable"
    # Locked after submission; a retry is allowed and recorded again.
    assert (await inv.put("/application/identity", ZHANG_SAN)).status == 409
    assert (await inv.post("/application/submit")).status == 503
    async with client.app[RUNTIME].db.begin() as s:
        assert await s.scalar(select(func.count()).select_from(IdentityCheck)) == 2


async def test_repeated_submit_is_idempotent(client: Any, fast_disclosure: None) -> None:
    inv, _ = await sign_in(client)
    await complete_intake(inv)
    assert (await inv.post("/application/submit")).status == 200
    before = await _counts(client)
    again = await inv.post("/application/submit")
    assert (
        again.status == 200 and (await again.json())["application"]["state"] == "identity_verified"
    )
    assert await _counts(client) == before


async def test_openapi_describes_every_investor_route(client: Any) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert doc["openapi"].startswith("3.")
    described = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    for route in client.app.router.routes():
        info = route.resource.canonical if route.resource else ""
        if info.startswith(API) and route.method != "HEAD":
            assert (route.method, info) in described, (route.method, info)
