"""server.workers and server.worker_port_base: defaults, derived values, refusals."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from server.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config, usable_cores

CLUSTER = {
    "WITNESS_QUEUE_BACKEND": "redis",
    "WITNESS_DATABASE_URL": "postgresql+asyncpg://u@db:5432/w",
}


def _load(env: dict[str, str] | None = None, **server: Any) -> Config:
    return load_config(DEFAULT_CONFIG_PATH, env=env or {}, overrides={"server": server})


def test_one_process_by_default() -> None:
    cfg = _load()
    assert cfg.server.workers == 1 and cfg.worker_count == 1
    assert cfg.worker is None and cfg.internal_port is None
    assert cfg.node_id.startswith(socket.gethostname())


def test_zero_is_one_worker_per_usable_core() -> None:
    assert _load(CLUSTER, workers=0).worker_count == usable_cores()


def test_worker_ids_and_ports() -> None:
    cfg = _load(CLUSTER, workers=3, port=9000, node_id="kaihu-1")
    assert [cfg.as_worker(i).node_id for i in range(3)] == [
        "kaihu-1-w0",
        "kaihu-1-w1",
        "kaihu-1-w2",
    ]
    assert [cfg.as_worker(i).internal_port for i in range(3)] == [9001, 9002, 9003]
    based = _load(CLUSTER, workers=2, worker_port_base=7100)
    assert based.as_worker(1).internal_port == 7101
    # Without a node_id the host name, not the pid: a restarted worker keeps its id.
    assert _load(CLUSTER, workers=2).as_worker(1).node_id == f"{socket.gethostname()}-w1"
    with pytest.raises(ConfigError, match=r"server\.workers"):
        cfg.as_worker(3)


@pytest.mark.parametrize(
    ("env", "server", "key"),
    [
        ({}, {"workers": -1}, "server.workers"),
        ({}, {"worker_port_base": 70000}, "server.worker_port_base"),
        ({"WITNESS_QUEUE_BACKEND": "redis"}, {"workers": 2}, "server.workers"),
        (
            {"WITNESS_DATABASE_URL": "postgresql+asyncpg://u@db:5432/w"},
            {"workers": 2},
            "server.workers",
        ),
        (CLUSTER, {"workers": 2, "port": 9000, "worker_port_base": 8999}, "worker_port_base"),
        (CLUSTER, {"workers": 4, "port": 80, "worker_port_base": 65533}, "worker_port_base"),
    ],
)
def test_bad_worker_settings_are_refused_naming_the_key(
    env: dict[str, str], server: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _load(env, **server)


def test_workers_from_the_environment() -> None:
    assert _load({**CLUSTER, "WITNESS_SERVER_WORKERS": "2"}).worker_count == 2
    with pytest.raises(ConfigError, match="WITNESS_SERVER_WORKERS"):
        _load({"WITNESS_SERVER_WORKERS": "many"})
