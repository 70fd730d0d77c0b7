"""Firefox as the investor's browser on a strict network (issue 16): Firefox runs in the
network lab's investor home (tests/netlab) with UDP blocked, so the call can only go
through coturn over TCP (or TLS on 443); intake, pre-call check, queue and a full
witnessed call with the witness on Chromium in the lab, both recordings decoding."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from server.content import load_script
from tests.conftest import IN_CI
from tests.e2e.conftest import artifact
from tests.e2e.firefox_flow import (
    KEEP_PCS,
    firefox_intake,
    firefox_joins_queue,
    firefox_precall,
    witness_runs_the_script,
    witness_takes_the_call,
)
from tests.e2e.pages import Watch
from tests.firefox import AsyncFirefox, Firefox, require_firefox
from tests.netlab import lab as netlab
from tests.netlab.calls import LabServer, check_recordings, lab_browser, lab_context, start_server
from tests.netlab.lab import Lab, LabUnavailable

pytestmark = [pytest.mark.netlab, pytest.mark.browser]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The lab of this run: tests/netlab's if it is up (one lab per process: the
    namespaces are named by pid), else one for this module."""
    require_firefox()
    live = next(iter(netlab._LIVE), None)
    if live is not None:
        yield live
        return
    try:
        made = Lab.create(tmp_path_factory.mktemp("netlab-firefox"))
    except LabUnavailable as exc:
        if IN_CI:
            pytest.fail(f"network lab unavailable: {exc}; CI runs as root with the lab's tools")
        pytest.skip(f"network lab unavailable: {exc}")
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def lab_server(lab: Lab, tmp_path: Path, sqlite_template: Path) -> Iterator[LabServer]:
    lab.reset()
    srv = start_server(lab, tmp_path / "server", sqlite_template)
    try:
        yield srv
    finally:
        srv.stop()
        lab.reset()


@pytest.fixture
async def home_firefox(lab: Lab, lab_server: LabServer) -> AsyncIterator[AsyncFirefox]:
    """firefox-esr inside the investor's home namespace."""
    fx = Firefox(
        netns=lab.ns["home"],
        size=(480, 900),
        log=artifact("firefox-turn.log"),
        prefs={
            # The lab serves plain HTTP on a non-loopback address, not a secure context:
            # without this getUserMedia does not exist (production uses HTTPS); the
            # Chromium side has --unsafely-treat-insecure-origin-as-secure.
            "dom.securecontext.allowlist": lab_server.base.split("//")[1].split(":")[0],
            "media.devices.insecure.enabled": True,
            "media.getusermedia.insecure.enabled": True,
            # An origin on that list counts as secure, so Firefox "upgrades" its plain-HTTP
            # images to https (mixed display content), which the lab does not serve: the
            # thumbnails would break. Over real HTTPS nothing is upgraded.
            "security.mixed_content.upgrade_display_content": False,
        },
    )
    await asyncio.wait_for(asyncio.to_thread(fx.start), 90)
    try:
        yield AsyncFirefox(fx)
    finally:
        with contextlib.suppress(Exception):  # what the page showed last, pass or fail
            shot = artifact("firefox-turn-last.png")
            await asyncio.wait_for(asyncio.to_thread(fx.screenshot, shot), 20)
        await asyncio.wait_for(asyncio.to_thread(fx.stop), 30)


def _network_check(server: LabServer) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(server.db, timeout=10)) as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT verdict, path, protocol FROM network_checks")]
    assert len(rows) == 1, rows
    return rows[0]


# TURN over TLS (turns:, UDP and TURN's TCP port both closed) is not covered for Firefox:
# with the lab's self-signed certificate trusted as a CA in the profile, firefox-esr 153
# still gathers no relay candidate from turns:203.0.113.2:443 and reports no ICE error,
# while turn:203.0.113.2:443?transport=tcp (plain TCP to coturn's TLS port) relays.
async def test_firefox_investor_through_turn_with_udp_blocked(
    lab: Lab, lab_server: LabServer, home_firefox: AsyncFirefox, tmp_path: Path
) -> None:
    lab.block_udp()
    fx = home_firefox
    await firefox_intake(fx, lab_server, tmp_path)
    verdict = await firefox_precall(fx)
    await fx.screenshot(artifact("firefox-turn-precall.png"))
    check = _network_check(lab_server)
    assert (check["verdict"], check["path"]) == (verdict, "relay"), check

    async with async_playwright() as pw, lab_browser(pw, lab, "wit", tmp_path / "media") as b:
        ctx = await lab_context(b, investor=False)
        await ctx.add_init_script(KEEP_PCS)
        wit = await ctx.new_page()
        wit_watch = Watch(wit)
        await firefox_joins_queue(fx)
        ff_stats = await witness_takes_the_call(lab_server, fx, wit)
        # Firefox's side of the call runs through coturn over TCP: UDP cannot leave home.
        assert ff_stats["pair"]["local"] == "relay", ff_stats
        assert ff_stats["pair"]["protocol"] == "tcp", ff_stats
        await witness_runs_the_script(fx, wit, load_script().steps, ff_stats, shots="firefox-turn")
        wit_watch.assert_clean()
        await ctx.close()

    rows = await asyncio.to_thread(check_recordings, lab_server)
    assert {r["participant"] for r in rows} == {"investor", "witness"}, rows
    assert all(r["status"] == "complete" for r in rows), rows
    assert (await fx.problems()) == {"errors": [], "csp": []}
