"""Supervision statistics (A23): who may read them, bounded ranges, the JSON and the CSV
export (UTF-8 with a byte-order mark), every read audited."""

from __future__ import annotations

import csv
import io
from typing import Any

from sqlalchemy import select

from server.domain.staff import Role
from server.http.keys import RUNTIME
from server.store.models import AuditEntry
from tests.call_flow import as_staff
from tests.helpers import add_staff
from tests.supervision_data import FIRST_DAY, LAST_DAY, seed

RANGE = f"from={FIRST_DAY}&to={LAST_DAY}"
JSON = {"Accept": "application/json"}


async def _seeded(client: Any) -> None:
    await add_staff(client, "wit.wang", {Role.WITNESS})
    await add_staff(client, "rev.li", {Role.REVIEWER})
    await add_staff(client, "comp.zhou", {Role.COMPLIANCE})
    await seed(client.app[RUNTIME].db, witness="wit.wang", reviewer="rev.li")


async def _audited(client: Any, action: str) -> list[AuditEntry]:
    async with client.app[RUNTIME].db.begin() as tx:
        return list(await tx.scalars(select(AuditEntry).where(AuditEntry.action == action)))


async def test_numbers_per_local_day_and_witness(client: Any) -> None:
    await _seeded(client)
    await as_staff(client, "comp.zhou")
    resp = await client.get(f"/staff/supervision.json?{RANGE}", headers=JSON)
    assert resp.status == 200
    body = await resp.json()
    assert (body["from"], body["to"]) == (FIRST_DAY, LAST_DAY)
    first, second = body["days"]
    assert (first["applications"], first["sessions"], first["passed"]) == (1, 1, 1)
    assert first["wait_s"] == {"count": 1, "p50": 40.0, "p95": 40.0}
    assert (second["applications"], second["failed"]) == (2, 1)
    assert second["fail_reasons"] == {"not_own_will": 1}
    assert second["review_s"]["p50"] == 600.0
    assert (second["callbacks"], second["callbacks_reached"]) == (2, 1)
    (wang,) = body["witnesses"]
    assert (wang["name"], wang["sessions"], wang["passed"], wang["failed"]) == ("Wit.Wang", 2, 1, 1)
    assert wang["call_s"]["p95"] == 300.0
    assert body["total"]["sessions"] == 2
    (entry,) = await _audited(client, "supervision.viewed")
    assert entry.details == {"from": FIRST_DAY, "to": LAST_DAY}

    page = await client.get("/staff/supervision", headers={"Accept": "text/html"})
    assert page.status == 200
    assert "/static/vendor/chart.js/chart.umd.min.js" in await page.text()


async def test_csv_export_has_bom_chinese_headers_and_rows(client: Any) -> None:
    await _seeded(client)
    await add_staff(client, "aud.qian", {Role.AUDITOR})
    await as_staff(client, "aud.qian")
    resp = await client.get(f"/staff/supervision.csv?{RANGE}")
    assert resp.status == 200
    assert resp.content_type == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    raw = await resp.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:3] == ["范围 scope", "日期 day", "见证人 witness"]
    by_day = {row[1]: row for row in rows[1:] if row[0] == "日 day"}
    assert by_day[LAST_DAY][3:8] == ["2", "1", "0", "1", "not_own_will: 1"]
    (witness,) = [row for row in rows if row[0] == "见证人 witness"]
    assert witness[2] == "Wit.Wang"
    assert witness[8:10] == ["40.0", "120.0"]
    (total,) = [row for row in rows if row[0] == "合计 total"]
    assert total[1] == f"{FIRST_DAY}..{LAST_DAY}"
    assert len(await _audited(client, "supervision.exported")) == 1


async def test_other_roles_and_strangers_are_refused(client: Any) -> None:
    await add_staff(client, "wit.wang", {Role.WITNESS})
    await add_staff(client, "rev.li", {Role.REVIEWER, Role.CALLBACK})
    for path in ["/staff/supervision.json", "/staff/supervision.csv"]:
        client.session.cookie_jar.clear()
        anonymous = await client.get(path, headers=JSON, allow_redirects=False)
        assert anonymous.status in (302, 401)
        for who in ["wit.wang", "rev.li"]:
            await as_staff(client, who)
            resp = await client.get(path, headers=JSON)
            assert resp.status == 403, (path, who)
    await as_staff(client, "rev.li")
    page = await client.get("/staff/supervision", headers={"Accept": "text/html"})
    assert page.status == 403
    assert await _audited(client, "supervision.viewed") == []


async def test_range_and_parameters_are_bounded(client: Any) -> None:
    await add_staff(client, "adm.sun", {Role.ADMIN})
    await as_staff(client, "adm.sun")
    ok = await client.get("/staff/supervision.json?from=2026-01-01&to=2026-04-02", headers=JSON)
    assert ok.status == 200
    assert len((await ok.json())["days"]) == 92
    default = await client.get("/staff/supervision.json", headers=JSON)
    assert len((await default.json())["days"]) == 7
    for query, code in [
        ("from=2026-01-01&to=2026-04-03", "range_too_long"),
        ("from=2026-03-05&to=2026-03-04", "bad_range"),
        ("from=2026-13-01", "bad_date"),
        ("to=now", "bad_date"),
        ("from=" + "9" * 2000, "param_invalid"),
    ]:
        for path in ["/staff/supervision.json", "/staff/supervision.csv"]:
            resp = await client.get(f"{path}?{query}", headers=JSON)
            assert resp.status == 400, (path, query)
            assert (await resp.json())["error"]["code"] == code
