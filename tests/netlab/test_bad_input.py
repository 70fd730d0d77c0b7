"""Bad input around the lab (issue 16): an ICE server URL that does not parse is refused
at config load with a clear message (the server does not start and does not hang), and a
namespace left over from a killed lab run is cleaned up by the next run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.config import ConfigError
from tests.netlab import lab as netlab
from tests.server_config import make_config, write_server_config

ROOT = Path(__file__).resolve().parents[2]
BAD_URLS = [
    ("turn://turn.example.com:3478", "is not a STUN/TURN URL"),
    ("turn:turn.example.com:99999", "port 99999 is not 1..65535"),
    ("turns:turn.example.com:443?transport=udp", "runs over TLS"),
    ("https://turn.example.com", "must start with stun:, turn: or turns:"),
    ("turn:alice@turn.example.com", "no user@"),
]


@pytest.mark.parametrize(("url", "says"), BAD_URLS)
def test_an_ice_url_that_does_not_parse_is_refused_at_config_load(
    tmp_path: Path, url: str, says: str
) -> None:
    media = {"ice_servers": [url], "turn_secret": "s" * 16}
    with pytest.raises(ConfigError) as err:
        make_config(tmp_path, "sqlite+aiosqlite:///x.db", media=media)
    assert str(err.value).startswith("media.ice_servers: "), err.value
    assert repr(url) in str(err.value) and says in str(err.value), err.value


def test_serve_with_a_bad_ice_url_exits_at_once_with_the_reason(tmp_path: Path) -> None:
    cfg = write_server_config(
        tmp_path / "config.toml",
        db_url=f"sqlite+aiosqlite:///{tmp_path / 'w.db'}",
        recordings=tmp_path / "rec",
        media={"ice_servers": ["turn://turn.example.com"], "turn_secret": "s" * 16},
    )
    done = subprocess.run(
        [sys.executable, "-m", "server", "--config", str(cfg), "serve", "--port", "0"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )  # fmt: skip
    assert done.returncode != 0
    assert "media.ice_servers: 'turn://turn.example.com' is not a STUN/TURN URL" in done.stderr


def test_good_ice_urls_load(tmp_path: Path) -> None:
    urls = [
        "stun:203.0.113.2:3478",
        "turn:turn.example.com:3478?transport=udp",
        "turn:turn.example.com:3478?transport=tcp",
        "turns:turn.example.com:443?transport=tcp",
        "turn:[2001:db8::1]:3478",
    ]
    cfg = make_config(
        tmp_path, "sqlite+aiosqlite:///x.db", media={"ice_servers": urls, "turn_secret": "s"}
    )
    assert cfg.media.ice_servers == tuple(urls)


def test_a_namespace_left_by_a_killed_run_is_removed_with_what_runs_in_it() -> None:
    try:
        netlab.check_available()
    except netlab.LabUnavailable as exc:
        pytest.skip(f"network lab unavailable: {exc}")
    # A pid that cannot be running: above the kernel's pid_max.
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    name = f"{netlab.PREFIX}{dead}-home"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    sleeper = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "300"])
    try:
        for _ in range(50):
            if subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                              timeout=10).stdout.strip():  # fmt: skip
                break
            time.sleep(0.1)
        removed = netlab.remove_leftovers()
        assert name in removed
        assert name not in netlab.lab_namespaces()
        assert sleeper.wait(timeout=10) != 0  # killed, not finished
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
