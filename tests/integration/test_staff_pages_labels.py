"""Staff pages as a new user found them (issue 17): each role's link once on the console,
the review page's application data labelled (no raw keys, dates written out, "long-term"
for a long-term ID, empty fields left out), and an icon at /favicon.ico."""

from __future__ import annotations

import re
from typing import Any

from server.domain.field_labels import application_rows
from server.domain.staff import Role
from tests.call_flow import as_staff, witnessed
from tests.helpers import add_staff

HTML = {"Accept": "text/html"}


def _app_data(html: str) -> str:
    found = re.search(r'<dl id="app-data".*?</dl>', html, re.S)
    assert found, "no application data on the page"
    return found.group(0)


async def test_review_page_labels_the_application_data(mclient: Any) -> None:
    sid = await witnessed(mclient)
    await add_staff(mclient, "rev.li", {Role.REVIEWER})
    await as_staff(mclient, "rev.li")
    page = await mclient.get(f"/staff/review/{sid}", headers=HTML)
    assert page.status == 200
    data = _app_data(await page.text())
    for raw in ("birth_date", "valid_from", "valid_until", "occupation", "email"):
        assert f">{raw}<" not in data, raw
    assert "None" not in data
    assert "出生日期" in data and "Date of birth" in data
    assert "有效期截止" in data and "长期" in data and "long-term" in data
    assert "居民身份证" in data and "resident_id" not in data
    assert re.search(r"核查结果.*?<dd>一致 <span lang=\"en\">match</span>", data, re.S)
    # Dates written out, not ISO keys and values.
    assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日", data)
    # No row without a value.
    assert not re.search(r"<dd[^>]*>\s*</dd>", data)


def test_empty_fields_are_left_out_and_long_term_is_said() -> None:
    rows = application_rows(
        {
            "sex": "F",
            "birth_date": "1949-12-31",
            "valid_from": "2015-06-01",
            "valid_until": None,
            "nationality": "CHN",
            "address": "北京市朝阳区建国路88号",
            "occupation": "retired",
            "email": "",
        }
    )
    by_field = {r["field"]: r for r in rows}
    assert "email" not in by_field
    assert by_field["valid_until"]["value_zh"] == "长期"
    assert by_field["valid_until"]["value_en"] == "long-term"
    assert by_field["birth_date"]["value_zh"] == "1949年12月31日"
    assert by_field["birth_date"]["value_en"] == "31 Dec 1949"
    assert by_field["occupation"]["value_zh"] == "离退休人员"
    assert by_field["sex"]["label_zh"] == "性别" and by_field["sex"]["value_en"] == "Female"


async def test_console_shows_each_role_link_once(mclient: Any) -> None:
    await add_staff(mclient, "multi.wang", {Role.REVIEWER, Role.CALLBACK, Role.COMPLIANCE})
    await as_staff(mclient, "multi.wang")
    html = await (await mclient.get("/staff/", headers=HTML)).text()
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), f"duplicate ids: {ids}"
    for href in ("/staff/callbacks", "/staff/review", "/staff/compliance"):
        assert html.count(f'href="{href}"') == 1, href
    assert html.count("Callbacks") == 1 and html.count(">Review<") == 1


async def test_favicon_is_served_and_linked(mclient: Any) -> None:
    icon = await mclient.get("/favicon.ico")
    assert icon.status == 200
    assert icon.headers["Content-Type"] == "image/x-icon"
    body = await icon.read()
    assert body[:4] == b"\x00\x00\x01\x00"  # an ICO header
    login = await (await mclient.get("/staff/login", headers=HTML)).text()
    assert '<link rel="icon" href="/favicon.ico"' in login
    investor = await (await mclient.get("/open", headers=HTML)).text()
    assert '<link rel="icon" href="/favicon.ico"' in investor
