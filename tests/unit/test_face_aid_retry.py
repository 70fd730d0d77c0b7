"""The two-way face aid (A17.3) starts again after a failed start, not only at restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from server.services.witnessing import actions


def _witnessing(tmp_path: Path, *, face_aid: bool = True) -> actions.Witnessing:
    placer: Any = SimpleNamespace(pairing=SimpleNamespace(db=None))
    return actions.Witnessing(
        placer=placer, scripts={}, agency=None, files_root=tmp_path, face_aid=face_aid
    )


async def test_a_failed_start_is_tried_again_after_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes: list[Any] = [RuntimeError("died loading the models"), True]
    calls: list[int] = []

    def available() -> bool:
        calls.append(1)
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return bool(outcome)

    monkeypatch.setattr(actions, "embedder_available", available)
    monkeypatch.setattr(actions, "FACE_AID_RETRY_S", 0.2)
    witnessing = _witnessing(tmp_path)
    assert await witnessing._face_aid_ready() is False
    assert await witnessing._face_aid_ready() is False  # not at every still
    assert len(calls) == 1
    await asyncio.sleep(0.25)
    assert await witnessing._face_aid_ready() is True
    assert await witnessing._face_aid_ready() is True  # started: asked once only
    assert len(calls) == 2


async def test_without_the_extra_it_is_not_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def not_installed() -> bool:
        calls.append(1)
        return False

    monkeypatch.setattr(actions, "embedder_available", not_installed)
    monkeypatch.setattr(actions, "FACE_AID_RETRY_S", 0.0)
    witnessing = _witnessing(tmp_path)
    assert await witnessing._face_aid_ready() is False
    assert await witnessing._face_aid_ready() is False
    assert len(calls) == 1
    off = _witnessing(tmp_path, face_aid=False)
    assert await off._face_aid_ready() is False
    assert len(calls) == 1
