"""Fixtures of the network lab: one lab (namespaces, router, coturn) per test run, a
fresh server and two Chromiums (investor at home, witness) per case.

Without root or namespaces the lab is skipped with the reason; with CI=true it fails."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.conftest import IN_CI
from tests.e2e.conftest import CHROMIUM, CHROMIUM_PRESENT
from tests.netlab.calls import LabServer, lab_browser, start_server
from tests.netlab.lab import Lab, LabUnavailable

pytestmark = pytest.mark.netlab


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"network lab unavailable: {reason}; CI runs as root with the lab's tools")
    pytest.skip(f"network lab unavailable: {reason}")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if not CHROMIUM_PRESENT:
        _unavailable(f"Chromium not found at {CHROMIUM}")
    try:
        made = Lab.create(tmp_path_factory.mktemp("netlab"))
    except LabUnavailable as exc:
        _unavailable(str(exc))
        raise  # unreachable: skip/fail raise
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def clean_lab(lab: Lab) -> Iterator[Lab]:
    """The lab with no impairment, TURN up and the investor home on Wi-Fi, before and
    after each case."""
    lab.reset()
    try:
        yield lab
    finally:
        lab.reset()


@pytest.fixture
def server(
    request: pytest.FixtureRequest, clean_lab: Lab, tmp_path: Path, sqlite_template: Path
) -> Iterator[LabServer]:
    """The server in the lab; ``[media]`` overrides by indirect parametrization."""
    media = getattr(request, "param", None)
    srv = start_server(clean_lab, tmp_path / "server", sqlite_template, media=media)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def browsers(clean_lab: Lab, tmp_path: Path) -> AsyncIterator[tuple[Browser, Browser]]:
    """(investor's Chromium in ``home``, witness's Chromium in ``wit``)."""
    async with async_playwright() as pw:
        async with (
            lab_browser(pw, clean_lab, "home", tmp_path / "media") as home,
            lab_browser(pw, clean_lab, "wit", tmp_path / "media") as wit,
        ):
            yield home, wit
