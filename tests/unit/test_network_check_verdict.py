"""The pre-call check's verdict (issue 16): a pure function of the measurements."""

from __future__ import annotations

import pytest

from server.domain.network_check import (
    Measurement,
    NetworkPath,
    Thresholds,
    Verdict,
    decide,
    path_of,
)

T = Thresholds()  # 300 / 800 weak, 100 / 2000 failed


def _m(**kw: object) -> Measurement:
    base: dict[str, object] = {
        "camera_ok": True,
        "microphone_ok": True,
        "connected": True,
        "rtt_ms": 40,
        "upstream_kbps": 1200,
    }
    return Measurement(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "verdict", "codes"),
    [
        ({}, Verdict.OK, []),
        ({"upstream_kbps": 300, "rtt_ms": 800}, Verdict.OK, []),  # thresholds are inclusive
        ({"upstream_kbps": 299}, Verdict.WEAK, ["upstream_low"]),
        ({"rtt_ms": 801}, Verdict.WEAK, ["rtt_high"]),
        ({"upstream_kbps": 200, "rtt_ms": 900}, Verdict.WEAK, ["upstream_low", "rtt_high"]),
        ({"upstream_kbps": 99}, Verdict.FAILED, ["upstream_too_low"]),
        ({"rtt_ms": 2001}, Verdict.FAILED, ["rtt_too_high"]),
        ({"upstream_kbps": 0}, Verdict.FAILED, ["no_video"]),
        ({"upstream_kbps": None}, Verdict.FAILED, ["no_video"]),
        ({"rtt_ms": None}, Verdict.OK, []),  # no echo, but media arrived
        (
            {"connected": False, "rtt_ms": None, "upstream_kbps": None},
            Verdict.FAILED,
            ["no_connection"],
        ),
        (
            {"camera_ok": False, "microphone_ok": False, "connected": False},
            Verdict.FAILED,
            ["camera", "microphone", "no_connection"],
        ),
        # A failure outranks a warning, and both are named only by the failure.
        ({"camera_ok": False, "rtt_ms": 900}, Verdict.FAILED, ["camera"]),
    ],
)
def test_verdict(kw: dict[str, object], verdict: Verdict, codes: list[str]) -> None:
    got, reasons = decide(_m(**kw), T)
    assert got is verdict
    assert [r.code for r in reasons] == codes
    for r in reasons:  # investors read both languages
        assert r.zh and r.en and r.zh != r.en


def test_thresholds_come_from_config() -> None:
    strict = Thresholds(weak_upstream_kbps=2000, failed_upstream_kbps=1500)
    assert decide(_m(), strict)[0] is Verdict.FAILED
    assert decide(_m(upstream_kbps=1800), strict)[0] is Verdict.WEAK


@pytest.mark.parametrize(
    ("candidate", "path"),
    [
        ("host", NetworkPath.DIRECT),
        ("srflx", NetworkPath.DIRECT),
        ("prflx", NetworkPath.DIRECT),
        ("relay", NetworkPath.RELAY),
        (None, NetworkPath.NONE),
    ],
)
def test_path_of_candidate(candidate: str | None, path: NetworkPath) -> None:
    assert path_of(candidate) is path
