"""Config: documented file loads, env overrides, invalid values fail naming the key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from server.adapters.catalogue import ADAPTER_KINDS
from server.config import DEFAULT_CONFIG_PATH, Config, ConfigError, GatewayConfig, load_config


def test_shipped_config_loads_with_embedded_defaults() -> None:
    cfg = load_config(DEFAULT_CONFIG_PATH, env={})
    assert cfg.queue.backend == "memory"
    assert cfg.database.url.startswith("sqlite+aiosqlite://")
    assert cfg.agency.timezone == "Asia/Shanghai"
    assert cfg.database_url.startswith(f"sqlite+aiosqlite:///{DEFAULT_CONFIG_PATH.parent}")


def test_env_overrides_every_type() -> None:
    env = {
        "WITNESS_DATABASE_URL": "postgresql+asyncpg://u@db:5432/w",
        "WITNESS_QUEUE_BACKEND": "redis",
        "WITNESS_SERVER_PORT": "9000",
        "WITNESS_DATABASE_ECHO": "yes",
        "WITNESS_SERVER_TRUSTED_PROXIES": "10.0.0.1, 10.0.1.0/24",
        "WITNESS_SERVER_FRAME_ANCESTORS": '["https://www.example.cn"]',
    }
    cfg = load_config(DEFAULT_CONFIG_PATH, env=env)
    assert cfg.database.url == "postgresql+asyncpg://u@db:5432/w"
    assert cfg.queue.backend == "redis"
    assert cfg.server.port == 9000
    assert cfg.database.echo is True
    assert cfg.server.trusted_proxies == ("10.0.0.1", "10.0.1.0/24")
    assert cfg.server.frame_ancestors == ("https://www.example.cn",)


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"WITNESS_SERVER_PORT": "eighty"}, "WITNESS_SERVER_PORT"),
        ({"WITNESS_QUEUE_BACKEND": "kafka"}, "queue.backend"),
        ({"WITNESS_DATABASE_URL": "mysql://x"}, "database.url"),
        ({"WITNESS_AGENCY_TIMEZONE": "Mars/Olympus"}, "agency.timezone"),
        ({"WITNESS_DATABASE_ECHO": "maybe"}, "WITNESS_DATABASE_ECHO"),
        ({"WITNESS_SECURITY_COOKIE_SECURE": "sometimes"}, "security.cookie_secure"),
        ({"WITNESS_MEDIA_ICE_SERVERS": "stun.example.com:3478"}, "media.ice_servers"),
        ({"WITNESS_MEDIA_ICE_SERVERS": "turn:turn.example.com:3478"}, "media.turn_secret"),
        ({"WITNESS_MEDIA_REJOIN_GRACE_SECONDS": "-1"}, "media.rejoin_grace_seconds"),
        ({"WITNESS_MEDIA_KEYFRAME_INTERVAL_SECONDS": "0.1"}, "media.keyframe_interval_seconds"),
    ],
)
def test_bad_env_value_names_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(DEFAULT_CONFIG_PATH, env=env)


def test_unknown_key_and_section_rejected(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"server\.prot: unknown key"):
        load_config(f, env={})
    f.write_text("[severs]\n")
    with pytest.raises(ConfigError, match="severs: unknown section"):
        load_config(f, env={})


def test_wrong_type_in_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[server]\nport = "8080"\n')
    with pytest.raises(ConfigError, match=r"server\.port: expected an integer"):
        load_config(f, env={})


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[server\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(f, env={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", env={})


def test_relative_paths_resolve_against_config_dir(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        '[storage]\nrecordings_dir = "rec"\n[database]\nurl = "sqlite+aiosqlite:///d/w.db"\n'
    )
    cfg = load_config(f, env={})
    assert cfg.recordings_path == tmp_path / "rec"
    assert cfg.database_url == f"sqlite+aiosqlite:///{tmp_path}/d/w.db"


def test_config_is_immutable() -> None:
    cfg = load_config(DEFAULT_CONFIG_PATH, env={})
    with pytest.raises(AttributeError):
        cfg.server.port = 1  # type: ignore[misc]


def test_tls_needs_both_files() -> None:
    with pytest.raises(ConfigError, match="tls_cert"):
        load_config(DEFAULT_CONFIG_PATH, env={"WITNESS_SERVER_TLS_CERT": "cert.pem"})


def test_media_defaults_use_no_public_ice_server() -> None:
    cfg = load_config(DEFAULT_CONFIG_PATH, env={})
    assert cfg.media.ice_servers == () and cfg.media.record is True
    cfg = load_config(
        DEFAULT_CONFIG_PATH,
        env={
            "WITNESS_MEDIA_ICE_SERVERS": "stun:s.example.cn:3478,turn:t.example.cn:3478",
            "WITNESS_MEDIA_TURN_SECRET": "x",
        },
    )
    assert cfg.media.ice_servers == ("stun:s.example.cn:3478", "turn:t.example.cn:3478")


def test_media_pipeline_is_passthrough_unless_asked() -> None:
    assert load_config(DEFAULT_CONFIG_PATH, env={}).media.pipeline == "passthrough"
    cfg = load_config(DEFAULT_CONFIG_PATH, env={"WITNESS_MEDIA_PIPELINE": "naive"})
    assert cfg.media.pipeline == "naive"
    with pytest.raises(ConfigError, match=r"media\.pipeline"):
        load_config(DEFAULT_CONFIG_PATH, env={"WITNESS_MEDIA_PIPELINE": "transcode"})


def test_audio_packets_are_40_ms_unless_asked() -> None:
    assert load_config(DEFAULT_CONFIG_PATH, env={}).media.audio_packet_ms == 40
    cfg = load_config(DEFAULT_CONFIG_PATH, env={"WITNESS_MEDIA_AUDIO_PACKET_MS": "20"})
    assert cfg.media.audio_packet_ms == 20
    with pytest.raises(ConfigError, match=r"media\.audio_packet_ms"):
        load_config(DEFAULT_CONFIG_PATH, env={"WITNESS_MEDIA_AUDIO_PACKET_MS": "30"})


def test_sandbox_identities_file_only_with_the_sandbox() -> None:
    env = {
        "WITNESS_IDENTITY_SANDBOX_IDENTITIES_FILE": "people.csv",
        "WITNESS_IDENTITY_PROVIDER": "http",
        "WITNESS_IDENTITY_HTTP_URL": "https://registry.example.cn/verify",
        "WITNESS_IDENTITY_HTTP_API_KEY": "k",
    }
    with pytest.raises(ConfigError, match=r"identity\.sandbox_identities_file"):
        load_config(DEFAULT_CONFIG_PATH, env=env)


_IDENTITY_HTTP = {"WITNESS_IDENTITY_PROVIDER": "http", "WITNESS_IDENTITY_HTTP_API_KEY": "k"}
_SMTP = "WITNESS_NOTICES_EMAIL_PROVIDER"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"WITNESS_SMS_PROVIDER": "pigeon"},
            "sms.provider: must be 'sandbox' or 'http', got 'pigeon'",
        ),
        (_IDENTITY_HTTP, "identity.http_url: required when identity.provider = 'http'"),
        (
            {**_IDENTITY_HTTP, "WITNESS_IDENTITY_HTTP_URL": "registry.example.cn"},
            "identity.http_url: required when identity.provider = 'http'",
        ),
        (
            {"WITNESS_SMS_PROVIDER": "http", "WITNESS_SMS_HTTP_URL": "https://sms.example.cn"},
            "sms.http_api_key: required when sms.provider = 'http'",
        ),
        ({"WITNESS_ACCOUNTS_PROVIDER": "csdc"}, "accounts.provider: must be 'sandbox' or 'http'"),
        (
            {"WITNESS_ACCOUNTS_PROVIDER": "http", "WITNESS_ACCOUNTS_HTTP_API_KEY": "k"},
            "accounts.http_url: required when accounts.provider = 'http'",
        ),
        (
            {"WITNESS_IDENTITY_SANDBOX_FAILURE_RATE": "-0.1"},
            "identity.sandbox_failure_rate: must be between 0 and 1",
        ),
        (
            {"WITNESS_ACCOUNTS_SANDBOX_FAILURE_RATE": "2"},
            "accounts.sandbox_failure_rate: must be between 0 and 1",
        ),
        ({_SMTP: "pigeon"}, "notices.email_provider: must be 'sandbox' or 'smtp'"),
        ({_SMTP: "smtp"}, "notices.smtp_host: smtp_host and smtp_from are required with smtp"),
        (
            {_SMTP: "smtp", "WITNESS_NOTICES_SMTP_HOST": "mail.example.cn"},
            "notices.smtp_host: smtp_host and smtp_from are required with smtp",
        ),
        (
            {"WITNESS_NOTICES_SMTP_TLS": "ssl"},
            "notices.smtp_tls: must be 'starttls', 'implicit' or 'none'",
        ),
    ],
)
def test_adapter_sections_are_checked_at_start(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        load_config(DEFAULT_CONFIG_PATH, env=env)


def test_http_providers_load_with_url_and_key() -> None:
    env = {
        f"WITNESS_{section}_{key}": value
        for section in ("IDENTITY", "SMS", "ACCOUNTS")
        for key, value in (
            ("PROVIDER", "http"),
            ("HTTP_URL", "https://gw.example.cn/x"),
            ("HTTP_API_KEY", "k"),
        )
    }
    env |= {_SMTP: "smtp", "WITNESS_NOTICES_SMTP_HOST": "m.example.cn"}
    env["WITNESS_NOTICES_SMTP_FROM"] = "notices@example.cn"
    cfg = load_config(DEFAULT_CONFIG_PATH, env=env)
    assert (cfg.identity.provider, cfg.sms.provider, cfg.accounts.provider) == ("http",) * 3


def test_every_gateway_section_is_checked_as_an_adapter() -> None:
    # A gateway section no adapter kind declares would load without its provider checked.
    defaults = Config()
    gateway_sections = {
        f.name
        for f in dataclasses.fields(Config)
        if isinstance(getattr(defaults, f.name), GatewayConfig)
    }
    assert gateway_sections == {"identity", "sms", "accounts", "screening"}
    assert gateway_sections <= {kind.section for kind in ADAPTER_KINDS}
