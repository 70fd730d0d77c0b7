"""The recording retrieval API and evidence packages (issue 8; A15, A19, A25): tokens,
every endpoint, Range reassembly, bad input, and offline verification of a package that
is then tampered with."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import random
import subprocess
import sys
import warnings
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.services import api_tokens
from server.store.models import (
    ApiToken,
    AuditEntry,
    NetworkCheck,
    Recording,
    WitnessSession,
    utcnow,
)
from tests.call_flow import recorded_session
from tests.helpers import add_staff, login

ROOT = Path(__file__).resolve().parents[2]


async def token(client: Any, name: str = "archive", days: int | None = None) -> str:
    async with client.app[RUNTIME].db.begin() as s:
        new = await api_tokens.create_token(
            s, name=name, scopes=["recordings:read"], days=days, actor="test"
        )
    return new.token


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def test_retrieval_api_end_to_end(mclient: Any, tmp_path: Path) -> None:
    rt = mclient.app[RUNTIME]
    sid = await recorded_session(mclient)
    good = bearer(await token(mclient))
    mclient.session.cookie_jar.clear()  # an outside system: no staff session

    # Auth: none, malformed, unknown, expired, revoked, wrong scope.
    assert (await mclient.get("/api/v1/sessions")).status == 401
    assert (
        await mclient.get("/api/v1/sessions", headers={"Authorization": "Basic x"})
    ).status == 401
    assert (await mclient.get("/api/v1/sessions", headers=bearer("wt_nope"))).status == 401
    expired = await token(mclient, "old", days=1)
    revoked = await token(mclient, "gone")
    async with rt.db.begin() as s:
        row = await s.scalar(select(ApiToken).where(ApiToken.name == "old"))
        assert row is not None
        row.expires_at = utcnow() - timedelta(minutes=1)
        await api_tokens.revoke_token(s, name="gone", actor="test")
        s.add(ApiToken(name="other", token_hash=api_tokens.token_hash("wt_other"),
                       scopes="reports:read", created_by="test"))  # fmt: skip
    for bad in (expired, revoked):
        resp = await mclient.get("/api/v1/sessions", headers=bearer(bad))
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "token_invalid"
    assert (await mclient.get("/api/v1/sessions", headers=bearer("wt_other"))).status == 403

    # Lists, filtered, ID numbers masked.
    listing = await (
        await mclient.get("/api/v1/sessions?status=aborted&limit=1", headers=good)
    ).json()
    assert [item["id"] for item in listing["items"]] == [sid]
    assert listing["items"][0]["application"]["id_number_masked"] == "110105********002X"
    assert listing["next_cursor"] is None
    assert "11010519491231002X" not in json.dumps(listing)
    none = await (await mclient.get("/api/v1/sessions?status=ended", headers=good)).json()
    assert none["items"] == []
    for query in ("status=bogus", "limit=0", "from=yesterday", "cursor=%%%"):
        resp = await mclient.get(f"/api/v1/sessions?{query}", headers=good)
        assert resp.status == 400, query

    async with rt.db.begin() as s:
        ws_row = await s.get(WitnessSession, sid)
        assert ws_row is not None
        s.add(NetworkCheck(application_id=ws_row.application_id, verdict="weak", path="relay",
                           protocol="tcp", rtt_ms=420, upstream_kbps=250, camera_ok=True,
                           microphone_ok=True, details={"reasons": ["upstream_low"]}))  # fmt: skip
    detail = await (await mclient.get(f"/api/v1/sessions/{sid}", headers=good)).json()
    assert detail["participants"]["witness"]["licence_number"] == "S0850120090042"
    # Issue 16: the pre-call check the investor passed, as stored.
    [net] = detail["network_checks"]
    assert (net["verdict"], net["path"], net["protocol"], net["rtt_ms"], net["upstream_kbps"]) == (
        "weak",
        "relay",
        "tcp",
        420,
        250,
    )
    assert net["reasons"] == ["upstream_low"]
    assert {r["participant"] for r in detail["recordings"]} == {"investor", "witness"}
    assert len(detail["stills"]) >= 1 and detail["identity_check"]["result"] == "match"
    # A3: the application's screenings (clear at intake, before queueing).
    assert [(x["stage"], x["result"]) for x in detail["screenings"]] == [("intake", "clear")]
    # Issue 16: each recording says where loss damaged it (measured: a list, maybe empty).
    for r in detail["recordings"]:
        assert isinstance(r["damage"], list) and 0 <= r["damaged_ms"] <= r["duration_ms"] + 1
        assert r["frames_lost"] >= 0

    # A recording: whole, then reassembled from random ranges; ETag; bad ranges.
    rec = detail["recordings"][0]
    whole = await mclient.get(f"/api/v1/recordings/{rec['id']}", headers=good)
    assert whole.status == 200 and whole.headers["Content-Type"] == "video/webm"
    assert whole.headers["ETag"] == f'"{rec["sha256"]}"'
    body = await whole.read()
    assert hashlib.sha256(body).hexdigest() == rec["sha256"] and len(body) == rec["bytes"]
    size, rng = len(body), random.Random(5)
    cuts = sorted({0, size, *(rng.randrange(1, size) for _ in range(7))})
    parts = []
    for start, end in itertools.pairwise(cuts):
        resp = await mclient.get(
            f"/api/v1/recordings/{rec['id']}", headers={**good, "Range": f"bytes={start}-{end - 1}"}
        )
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}"
        parts.append(await resp.read())
    assert hashlib.sha256(b"".join(parts)).hexdigest() == rec["sha256"]
    tail = await mclient.get(
        f"/api/v1/recordings/{rec['id']}", headers={**good, "Range": "bytes=-10"}
    )
    assert tail.status == 206 and await tail.read() == body[-10:]
    for bad in ("bytes=abc", f"bytes={size}-", "bytes=5-2", "items=0-1", "bytes=-0"):
        resp = await mclient.get(f"/api/v1/recordings/{rec['id']}", headers={**good, "Range": bad})
        assert resp.status == 416, bad
        assert resp.headers["Content-Range"] == f"bytes */{size}"
    cached = await mclient.get(
        f"/api/v1/recordings/{rec['id']}", headers={**good, "If-None-Match": f'"{rec["sha256"]}"'}
    )
    assert cached.status == 304

    # Unknown ids, ids of another kind, path-like ids: 404, never 500.
    still_id = detail["stills"][0]["id"]
    for path in (
        f"/api/v1/recordings/{still_id}",
        f"/api/v1/stills/{rec['id']}",
        "/api/v1/recordings/" + "0" * 32,
        "/api/v1/recordings/..%2F..%2Fconfig.toml",
        "/api/v1/recordings/%2e%2e",
        "/api/v1/sessions/../../etc/passwd",
        f"/api/v1/sessions/{sid.upper()}",
    ):
        resp = await mclient.get(path, headers=good)
        assert resp.status == 404, path
    still = await mclient.get(f"/api/v1/stills/{still_id}", headers=good)
    assert still.status == 200 and (await still.read())[:2] == b"\xff\xd8"

    # The evidence package, verified offline, then tampered with.
    key = await (await mclient.get("/api/v1/evidence-key")).json()
    pem = tmp_path / "evidence.pem"
    pem.write_text(key["public_key_pem"])
    package = tmp_path / "evidence.zip"
    resp = await mclient.get(f"/api/v1/sessions/{sid}/evidence", headers=good)
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/zip"
    package.write_bytes(await resp.read())
    with zipfile.ZipFile(package) as z:
        names = z.namelist()
        manifest = json.loads(z.read("manifest.json"))
    assert any(n.startswith("recordings/") for n in names)
    assert any(n.startswith("stills/") for n in names)
    assert any(n.startswith("documents/id_front") for n in names)
    assert all(f.get("matches_record", True) for f in manifest["files"])
    assert manifest["audit"]["chain_head"]["seq"] >= max(
        e["seq"] for e in manifest["audit"]["entries"]
    )
    assert {"recording.closed", "session.aborted"} <= {
        e["action"] for e in manifest["audit"]["entries"]
    }
    assert manifest["session"]["screenings"][0]["result"] == "clear"
    # The package carries each recording's damage account (issue 16), as the API lists it.
    assert [r["damage"] for r in manifest["session"]["recordings"]] == [
        r["damage"] for r in detail["recordings"]
    ]
    assert "screening.screened" in {e["action"] for e in manifest["audit"]["entries"]}

    ok = _verify(package, pem)
    assert ok.returncode == 0, ok.stderr
    assert "evidence package valid" in ok.stdout

    one_byte = tmp_path / "one-byte.zip"
    _rewrite(
        package,
        one_byte,
        lambda n, d: d[:-1] + bytes([d[-1] ^ 1]) if n.startswith("recordings/") else d,
    )
    bad = _verify(one_byte, pem)
    assert bad.returncode == 1 and "SHA-256 does not match" in bad.stderr

    def change_manifest(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        doc = json.loads(data)
        doc["session"]["verdict"] = "pass"
        return json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=True).encode()

    doubled = tmp_path / "doubled.zip"
    with (
        warnings.catch_warnings(),  # zipfile warns about the duplicate: that is the point
        zipfile.ZipFile(package) as zin,
        zipfile.ZipFile(doubled, "w") as zout,
    ):
        warnings.simplefilter("ignore", UserWarning)
        first = next(n for n in zin.namelist() if n.startswith("recordings/"))
        zout.writestr(first, b"forged")  # a forged copy first, the genuine one later
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    bad = _verify(doubled, pem)
    assert bad.returncode == 1 and "duplicate file names" in bad.stderr
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(package.read_bytes()[: package.stat().st_size // 2])
    bad = _verify(truncated, pem)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    # HEAD would otherwise send the body: not offered.
    head = await mclient.head(f"/api/v1/recordings/{rec['id']}", headers=good)
    assert head.status == 405

    edited = tmp_path / "edited.zip"
    _rewrite(package, edited, change_manifest)
    bad = _verify(edited, pem)
    assert bad.returncode == 1 and "signature invalid" in bad.stderr

    # A25: every call is on the record, refused ones too, with bytes served. (The entry
    # is written as the streamed response completes: the verifications above blocked
    # this process, so let the server finish.)
    async def access_log() -> list[AuditEntry]:
        async with rt.db.begin() as s:
            stmt = select(AuditEntry).where(AuditEntry.action == "api.access")
            return list((await s.scalars(stmt)).all())

    for _ in range(300):  # up to 30 s: a loaded machine may take that long
        calls = await access_log()
        if any(c.details["endpoint"].endswith("/evidence") for c in calls):
            break
        await asyncio.sleep(0.1)
    statuses = {c.details["status"] for c in calls}
    assert {200, 206, 304, 401, 403, 404, 416} <= statuses
    evidence_call = next(c for c in calls if c.details["endpoint"].endswith("/evidence"))
    assert evidence_call.details["bytes"] == package.stat().st_size
    assert evidence_call.actor.startswith("token:")


async def test_auditor_session_may_use_the_api_and_others_may_not(mclient: Any) -> None:
    await add_staff(mclient, "audit.zhao", {Role.AUDITOR})
    await add_staff(mclient, "wit.qian", {Role.WITNESS})
    await login(mclient, "wit.qian")
    assert (await mclient.get("/api/v1/sessions")).status == 403
    mclient.session.cookie_jar.clear()
    await login(mclient, "audit.zhao")
    resp = await mclient.get("/api/v1/sessions")
    assert resp.status == 200 and (await resp.json())["items"] == []


def _verify(package: Path, pem: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", "verify-evidence", str(package), "--key", str(pem)],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip


def _rewrite(src: Path, dst: Path, change: Any) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, change(info.filename, zin.read(info.filename)))


async def test_openapi_document_is_valid_and_covers_every_api_route(mclient: Any) -> None:
    from openapi_spec_validator import validate

    doc = await (await mclient.get("/api/v1/openapi.json")).json()
    validate(doc)  # raises on an invalid OpenAPI document
    described = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    for route in mclient.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith("/api/v1/") and route.method != "HEAD":
            assert (route.method, path) in described, (route.method, path)


def test_retention_counts_calendar_years() -> None:
    from datetime import UTC, datetime

    from server.services.retrieval.retention import retention_cutoff

    assert retention_cutoff(3, now=datetime(2027, 1, 1, tzinfo=UTC)) == datetime(
        2024, 1, 1, tzinfo=UTC
    )
    assert retention_cutoff(1, now=datetime(2028, 2, 29, tzinfo=UTC)) == datetime(
        2027, 2, 28, tzinfo=UTC
    )


async def test_retention_keeps_recent_and_held_evidence(mclient: Any) -> None:
    from server.services.retrieval import retention

    rt = mclient.app[RUNTIME]
    sid = await recorded_session(mclient)
    root = rt.config.recordings_path
    async with rt.db.begin() as s:
        recs = (await s.scalars(select(Recording).where(Recording.session_id == sid))).all()
        held, old = recs[0].id, recs[1].id
    report = await retention.purge(rt.db, root=root, years=30, dry_run=False, actor="test")
    assert report.purged == [] and report.eligible == []  # nothing is old enough
    async with rt.db.begin() as s:
        for rec in (await s.scalars(select(Recording).where(Recording.session_id == sid))).all():
            rec.started_at = utcnow() - timedelta(days=365 * 31)
        await retention.set_hold(s, recording_id=held, hold=True, actor="test")
    dry = await retention.purge(rt.db, root=root, years=30, dry_run=True, actor="test")
    assert dry.eligible == [old] and dry.held == 1 and dry.purged == []
    report = await retention.purge(rt.db, root=root, years=30, dry_run=False, actor="test")
    assert report.purged == [old]
    async with rt.db.begin() as s:
        gone = await s.get(Recording, old)
        kept = await s.get(Recording, held)
        actions = (await s.scalars(select(AuditEntry.action))).all()
    assert gone is not None and gone.status == "purged" and gone.sha256  # the row and hash stay
    assert not (root / gone.path).exists()
    assert kept is not None and (root / kept.path).exists() and kept.status == "complete"
    assert "recording.purged" in actions and "recording.legal_hold" in actions
