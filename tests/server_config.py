"""The configuration every test server runs with: built in-process (``make_config``) or
written to a config.toml for a server started as its own process
(``write_server_config``), from the same defaults."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from server.config import Config, load_config
from server.content import DEFAULT_INTAKE_PATH

TEST_DATA_KEY = base64.b64encode(b"k" * 32).decode()


def server_sections(
    *, db_url: str, recordings: str | Path, **sections: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Section -> key -> value: the test defaults, with ``sections`` merged in per key."""
    merged: dict[str, dict[str, Any]] = {
        "database": {"url": db_url},
        "storage": {"recordings_dir": str(recordings)},
        "security": {"data_key": TEST_DATA_KEY, "create_key_file": False},
        "logging": {"level": "WARNING", "format": "text"},
        # WebRTC over loopback only (aioice never offers 127.0.0.1 unless told).
        "media": {"host_addresses": ["127.0.0.1"]},
        # Screening runs inside every identity check and approval; its sandbox latency
        # is tested in test_screening_adapter.py and would only slow every other test.
        "screening": {"sandbox_latency_ms": 0},
        # The pre-call check (issue 16) is a few seconds of WebRTC per investor: flows that
        # only need a queued investor skip it; its own tests, and the browser tests that
        # walk the page (which always shows it), turn it on.
        "intake": {"require_network_check": False},
    }
    for name, values in sections.items():
        merged.setdefault(name, {}).update(values)
    return merged


def make_config(tmp_path: Path, db_url: str, **sections: dict[str, Any]) -> Config:
    overrides = server_sections(db_url=db_url, recordings=tmp_path / "recordings", **sections)
    # An empty environment: the developer's WITNESS_* variables must not leak into tests.
    return load_config(None, env={}, overrides=overrides)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        # A JSON string is a valid TOML basic string.
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def to_toml(sections: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def write_server_config(
    path: Path, *, db_url: str, recordings: str | Path, **sections: dict[str, Any]
) -> Path:
    """A config.toml at ``path`` with the test defaults plus ``sections``; relative paths
    in it are resolved by the server against the file's directory."""
    path.write_text(
        to_toml(server_sections(db_url=db_url, recordings=recordings, **sections)),
        encoding="utf-8",
    )
    return path


def intake_without_reading_time(directory: Path) -> Path:
    """The built-in intake content with the disclosure's minimum reading time set to 0
    (a product rule tests should not wait for), for ``[intake] content_file``."""
    path = directory / "intake.toml"
    path.write_text(
        re.sub(r"min_read_seconds = \d+", "min_read_seconds = 0", DEFAULT_INTAKE_PATH.read_text())
    )
    return path
