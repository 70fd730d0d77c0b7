"""Unknown WITNESS_* variables stop the start-up, naming the variable (issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.config import DEFAULT_CONFIG_PATH, ConfigError, load_config


def test_a_misspelt_override_is_refused_with_a_suggestion() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^WITNESS_SERVR_PORT: unknown environment variable "
        r"\(did you mean WITNESS_SERVER_PORT\?\)$",
    ):
        load_config(DEFAULT_CONFIG_PATH, env={"WITNESS_SERVR_PORT": "9000"})


def test_an_unknown_variable_far_from_any_key_is_refused_plainly() -> None:
    with pytest.raises(ConfigError, match=r"^WITNESS_COLOUR: unknown environment variable$"):
        load_config(DEFAULT_CONFIG_PATH, env={"WITNESS_COLOUR": "blue"})


def test_known_overrides_and_the_tools_own_variables_are_accepted() -> None:
    env = {
        "WITNESS_SERVER_PORT": "9000",
        "WITNESS_CONFIG": str(DEFAULT_CONFIG_PATH),
        "WITNESS_TOKEN": "for the auditor's scripts",
        "WITNESS_TEST_PG_DSN": "postgresql://postgres@127.0.0.1:5432/test",
        "WITNESS_BENCH_REDIS_URL": "redis://127.0.0.1:6379/14",
        "PATH": "/usr/bin",
    }
    assert load_config(DEFAULT_CONFIG_PATH, env=env).server.port == 9000


def test_the_command_line_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = {**os.environ, "WITNESS_DATABASE_UR": "sqlite+aiosqlite:///x.db"}
    result = subprocess.run(
        [sys.executable, "-m", "server", "check-config"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "WITNESS_DATABASE_UR: unknown environment variable" in result.stderr
    assert "WITNESS_DATABASE_URL" in result.stderr
