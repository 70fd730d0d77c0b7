"""axe-core in the browser tests (issue 17): inject the vendored axe.min.js and list the
serious and critical violations of a page.

The pages have a strict CSP (no inline script), so a test that runs axe opens its context
with ``bypass_csp=True``; only these tests do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.async_api import Page

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
SEVERE = ("serious", "critical")


async def violations(page: Page, *, include: str | None = None) -> list[dict[str, Any]]:
    """Serious and critical violations on what the page shows now (hidden steps are
    skipped by axe itself)."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    found: list[dict[str, Any]] = await page.evaluate(
        """async (include) => {
          const r = await axe.run(include ? document.querySelector(include) : document,
            { resultTypes: ['violations'] });
          return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map((n) => n.target.join(' ') + ' — ' + n.failureSummary) }));
        }""",
        include,
    )
    return [v for v in found if v["impact"] in SEVERE]


# The same run in Firefox: Marionette's execute_script runs in the page's own global and the
# page's CSP does not apply to it, so axe.min.js goes in as part of the first script (no
# bypass needed); arguments[0] is the part of the page to look at, or null for all of it.
FIREFOX_RUN = """
const r = await axe.run(arguments[0] ? document.querySelector(arguments[0]) : document,
  { resultTypes: ['violations'] });
return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
  nodes: v.nodes.map((n) => n.target.join(' ') + ' — ' + n.failureSummary) }));
"""


async def firefox_violations(fx: Any, *, include: str | None = None) -> list[dict[str, Any]]:
    """``violations`` in Firefox (``fx``: tests.firefox.AsyncFirefox)."""
    loaded = await fx.js("return typeof window.axe !== 'undefined'")
    body = FIREFOX_RUN if loaded else AXE.read_text(encoding="utf-8") + ";\n" + FIREFOX_RUN
    found: list[dict[str, Any]] = await fx.js(body, include, timeout=60.0)
    return [v for v in found if v["impact"] in SEVERE]


def report(where: str, found: list[dict[str, Any]]) -> str:
    lines = [f"{where}: {len(found)} serious/critical axe violation(s)"]
    for v in found:
        lines.append(f"  {v['id']} ({v['impact']}): {v['help']}")
        lines.extend(f"    {n}" for n in v["nodes"][:5])
    return "\n".join(lines)


async def assert_no_severe(page: Page, where: str, log: list[str] | None = None) -> None:
    found = await violations(page)
    if log is not None:
        log.append(report(where, found))
    assert not found, report(where, found)
