"""Typed, immutable configuration from ``config.toml`` plus ``WITNESS_*`` overrides.

Every key in the file may be overridden by ``WITNESS_<SECTION>_<KEY>`` (upper case),
e.g. ``WITNESS_DATABASE_URL``. Unknown sections, keys and ``WITNESS_*`` variables are
errors, so a typo fails at start with the key named instead of silently falling back to a
default.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import os
import re
import socket
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.adapters.catalogue import adapter_problem
from server.domain.business import ServiceOffer, parse_offer

ENV_PREFIX = "WITNESS_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config.toml"


class ConfigError(Exception):
    """A configuration value is missing, unknown or invalid; the message names the key."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    node_id: str = ""
    public_url: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    trusted_proxies: tuple[str, ...] = ()
    frame_ancestors: tuple[str, ...] = ()
    cluster_origins: tuple[str, ...] = ()
    max_body_mb: int = 20
    # The longest a request body may take to arrive (whole body, not between bytes); a
    # client trickling one longer is answered 408 and its connection closed.
    body_read_timeout_seconds: float = 30.0
    # Media worker processes on this machine behind the one public port (SO_REUSEPORT):
    # 1 = a single process (the embedded default), 0 = one per CPU core.
    workers: int = 1
    # Worker i also listens on 127.0.0.1:<base + i>, where another worker hands it the
    # session sockets of its sessions; 0 = server.port + 1.
    worker_port_base: int = 0
    # "asyncio" (the standard loop) or "uvloop" (optional extra `fast`). uvloop saved
    # ~12 % on the frame path but is no faster on the packet path (issue 21), where media
    # no longer goes through a task per packet: docs/benchmarks.md.
    event_loop: str = "asyncio"
    # glibc malloc arenas per serving process (0: glibc's default, eight per core). Each
    # thread's arena keeps what was freed in it: two cut RSS at 16 sessions by 83 MB at
    # the same CPU (issue 21, docs/benchmarks.md).
    malloc_arenas: int = 2


@dataclass(frozen=True)
class AgencyConfig:
    name: str = "示例证券股份有限公司"
    name_en: str = "Example Securities Co., Ltd."
    website: str = "https://www.example-securities.cn"
    hotline: str = "95500"
    timezone: str = "Asia/Shanghai"
    # Where investors can check a witness's licence (A12): the Securities Association of
    # China's public register of practitioners.
    licence_lookup_url: str = "https://gs.sac.net.cn/pages/registration/sac-publicity-report.html"


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = "sqlite+aiosqlite:///var/witness.db"
    echo: bool = False
    pool_size: int = 10


@dataclass(frozen=True)
class QueueConfig:
    backend: str = "memory"


@dataclass(frozen=True)
class RedisConfig:
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "witness:"
    # Sockets a process may hold open: each keeps one Redis connection for its
    # subscription (server/queue/redis.py).
    max_subscriptions: int = 2000


@dataclass(frozen=True)
class StorageConfig:
    recordings_dir: str = "recordings"


@dataclass(frozen=True)
class SecurityConfig:
    data_key: str = ""
    data_key_file: str = "var/data.key"
    # Ed25519 seed (base64, 32 bytes) signing evidence packages; empty: derived from the
    # data key (HKDF, its own purpose label). Publish the public key: GET /api/v1/evidence-key.
    evidence_key: str = ""
    create_key_file: bool = True
    session_cookie: str = "witness_staff"
    session_idle_minutes: int = 30
    session_max_hours: int = 12
    cookie_secure: str = "auto"
    # Staff login (docs/security.md): failures per (address, username) before that pair
    # is locked out with back-off, and per address across usernames.
    login_max_failures: int = 5
    login_max_failures_per_address: int = 20
    lockout_base_seconds: int = 30
    lockout_max_seconds: int = 3600
    # argon2 checks run in threads of their own: this many at once, this many more waiting.
    password_hash_concurrency: int = 2
    password_hash_queue: int = 8


@dataclass(frozen=True)
class IntakeConfig:
    content_file: str = ""
    min_age: int = 18
    image_max_mb: int = 8
    # Memory, not file size, is what an image costs: a 116 KB PNG can declare 6300×6300.
    image_max_decoded_mb: int = 100
    image_decode_budget_mb: int = 512
    otp_length: int = 6
    otp_ttl_seconds: int = 300
    otp_max_attempts: int = 5
    otp_resend_seconds: int = 60
    otp_per_phone_per_hour: int = 5
    otp_per_ip_per_hour: int = 30
    session_hours: int = 2
    writes_per_ip_per_minute: int = 120
    identity_checks_per_hour: int = 5
    # The pre-call check (issue 16): a short test connection to the media node before
    # queueing. Required: POST /application/queue refuses without a recent passing one.
    require_network_check: bool = True
    network_check_seconds: float = 4.0  # measuring, once connected
    network_check_connect_seconds: float = 10.0  # to connect, else the probe is closed
    network_check_valid_minutes: int = 60  # networks change: an older check is redone
    network_checks_per_hour: int = 12  # test connections per application per hour
    network_check_max_concurrent: int = 4  # test connections at once per process
    network_check_weak_upstream_kbps: int = 300
    network_check_weak_rtt_ms: int = 800
    network_check_failed_upstream_kbps: int = 100
    network_check_failed_rtt_ms: int = 2000


@dataclass(frozen=True)
class GatewayConfig:
    """An outside service reached through an adapter: a sandbox, or an HTTP gateway.

    The shape server/adapters/http_gateway.py's GatewaySettings reads; which values are
    valid is declared by each adapter kind and checked in _validate (adapter_problem).
    """

    provider: str = "sandbox"
    sandbox_latency_ms: int = 300
    sandbox_failure_rate: float = 0.0
    http_url: str = ""
    http_api_key: str = ""
    http_timeout_seconds: float = 5.0
    http_retries: int = 2


@dataclass(frozen=True)
class IdentityConfig(GatewayConfig):
    # Sandbox only: a UTF-8 CSV of extra test identities ("name,id_number" per line), for
    # testers and the load benchmark; the built-in ones stay.
    sandbox_identities_file: str = ""


@dataclass(frozen=True)
class AccountsConfig(GatewayConfig):
    # Sandbox only: a TOML file of test holders for account services (A20–A22), format at
    # the top of server/content/sandbox_holders.toml; "" = that built-in file.
    sandbox_holders_file: str = ""


@dataclass(frozen=True)
class ScreeningConfig(GatewayConfig):
    # A3 anti-money-laundering screening. Sandbox only: the list files (UTF-8 CSV, format
    # in docs/risk.md); "" = the built-in fictional ones in server/content/screening/.
    sanctions_file: str = ""
    pep_file: str = ""
    blocklist_file: str = ""


@dataclass(frozen=True)
class RiskConfig:
    # A23 risk monitoring (docs/risk.md). "" = the shipped server/content/risk_rules.toml;
    # otherwise the agency's copy, relative to this file's folder, checked at start.
    rules_file: str = ""
    # The agency's risk system is told of every new alert by a signed POST; "" = off.
    webhook_url: str = ""
    # HMAC-SHA256 key for X-Witness-Signature; required when webhook_url is set.
    webhook_secret: str = ""
    webhook_timeout_seconds: float = 10.0
    # Retries: first after webhook_backoff_seconds, doubling, at most
    # webhook_backoff_max_seconds apart, given up after webhook_max_attempts.
    webhook_backoff_seconds: float = 30.0
    webhook_backoff_max_seconds: float = 3600.0
    webhook_max_attempts: int = 10
    # The clock: overdue escalation and the time-based rules, every this many seconds.
    sweep_seconds: float = 60.0
    # An approved application's callback (A8) is due within this many hours.
    callback_deadline_hours: int = 72


@dataclass(frozen=True)
class NoticesConfig:
    # A9: the account numbers go to the investor by SMS (the [sms] gateway) and by email.
    email_provider: str = "sandbox"  # sandbox (kept in an outbox) | smtp
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_from: str = ""
    smtp_tls: str = "starttls"  # starttls | implicit | none
    # TrueType/TTC font embedded in the confirmation PDF (must contain Chinese glyphs).
    pdf_font: str = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"


@dataclass(frozen=True)
class CallbackConfig:
    # A8: "callback_first" (call back, then open) or "open_first" (open blocked, then
    # call back; A17.6: usable only after the callback succeeds).
    order: str = "callback_first"
    # Unreachable this many times: the callback fails and the application ends.
    max_attempts: int = 3


@dataclass(frozen=True)
class SmsConfig(GatewayConfig):
    sandbox_latency_ms: int = 200
    sandbox_show_code: bool = True


@dataclass(frozen=True)
class PairingConfig:
    policy: str = "longest_idle"
    match_skills: bool = False
    offer_timeout_seconds: int = 20
    investor_grace_seconds: int = 30
    witness_presence_ttl_seconds: int = 30
    heartbeat_seconds: int = 10
    dispatch_interval_seconds: float = 1.0
    join_timeout_seconds: int = 60
    session_token_ttl_seconds: int = 600
    node_ttl_seconds: int = 15


@dataclass(frozen=True)
class MediaConfig:
    # STUN/TURN URLs given to browsers and used by the server's own connections, e.g.
    # "stun:turn.example.com:3478", "turn:turn.example.com:3478?transport=udp". Empty
    # works on a LAN or loopback; never a public default.
    ice_servers: tuple[str, ...] = ()
    # coturn "use-auth-secret": TURN credentials are minted per party, valid this long.
    turn_secret: str = ""
    turn_credential_ttl_seconds: int = 3600
    # Local addresses offered as ICE host candidates (empty: every interface but
    # loopback). Set the address browsers can reach, or 127.0.0.1 for loopback tests.
    host_addresses: tuple[str, ...] = ()
    rejoin_grace_seconds: int = 30
    # The witnessing script (A17.4); empty: the built-in server/content/script.toml.
    script_file: str = ""
    keyframe_interval_seconds: float = 10.0
    record: bool = True
    # "passthrough": RTP packets forwarded as they come, frames recorded as sent (the
    # product). "frames": frames assembled, forwarded and packetized again (the way
    # before issue 21; a fallback, and the benchmark's comparison).
    # "naive": aiortc's decode → re-encode relay and MediaRecorder, only so the load
    # benchmark can measure what passthrough saves on the same machine (issue 9).
    pipeline: str = "passthrough"
    # The most a party is asked to send (REMB), kbit/s; 0 = only what the other party's
    # browser can take. Forwarded video cannot be re-encoded to fit a slower receiver.
    max_video_kbps: int = 2500
    # How much audio each Opus packet carries, in ms, as the server's answers ask the
    # browsers (SDP ``a=ptime``). 40: half the packets of the browsers' 20 ms default,
    # so the relay forwards, encrypts and records 25 fewer packets a second per party
    # (audio was 2 of every 5 packets) and a phone sends ~12 kbit/s less in headers;
    # speech is 20 ms later and a lost packet loses 40 ms (the receiving browser
    # conceals it; the recording's damage account counts it). 20 keeps the browsers'
    # default.
    audio_packet_ms: int = 40


@dataclass(frozen=True)
class ServicesConfig:
    # A20–A22: the businesses offered, by method (server/domain/business.py). A22: with
    # "open" witnessed, "cancel" must be witnessed too. Online services serve only
    # accounts that were opened online.
    witnessed: tuple[str, ...] = (
        "open",
        "cancel",
        "change_info",
        "reactivate",
        "query",
        "lift_loss_report",
        "transfer_relationship",
        "beijing_mark",
    )
    online: tuple[str, ...] = ("cancel",)
    # Services whose result waits for a phone callback, as an opening does (A8).
    callback: tuple[str, ...] = ("cancel", "transfer_relationship")
    # A directory of per-business scripts ("cancel.toml"…) overriding the built-in ones.
    scripts_dir: str = ""

    @property
    def offer(self) -> ServiceOffer:
        return parse_offer(witnessed=self.witnessed, online=self.online, callback=self.callback)


@dataclass(frozen=True)
class OneWayConfig:
    # A18: the investor records alone and the machine checks liveness, face and the
    # statement; a witness then reviews the recording. Off unless the agency turns it on.
    enabled: bool = False
    # Who may choose it (the agency's rule; everyone else joins the two-way queue).
    min_age: int = 18
    max_age: int = 60
    # A18.3: instructions drawn per attempt, seconds allowed for each, attempts allowed.
    instructions: int = 3
    instruction_seconds: float = 8.0
    attempts: int = 3
    # A18.5: statement takes allowed within one attempt (each failed take is redone).
    statement_takes: int = 3
    statement_max_seconds: float = 60.0
    # A18.4: largest dlib embedding distance counted as the same person (same person
    # measured 0.14–0.42, different people 0.61–0.91 on test images; tune on real data).
    face_threshold: float = 0.45
    # Attempts running at once on one node (each decodes video and runs dlib: ~0.3 of a
    # core while it lasts; see docs/one-way.md).
    max_concurrent: int = 2
    # Sandbox only (identity.provider = "sandbox"): every attempt gets these instructions
    # instead of a random draw, so a test camera video can perform them. Refused otherwise.
    sandbox_sequence: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReviewConfig:
    # A17.5: playback faster than this does not count as reviewed.
    max_rate: float = 2.0
    # Approve needs every recording played with no unplayed stretch this long or longer.
    max_gap_ms: int = 1000


@dataclass(frozen=True)
class RetentionConfig:
    # A15, A19: evidence is kept at least this long after the session; nothing deletes it
    # sooner, and a legal hold keeps it regardless.
    years: int = 30


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"
    format: str = "json"


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    agency: AgencyConfig = field(default_factory=AgencyConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    intake: IntakeConfig = field(default_factory=IntakeConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    sms: SmsConfig = field(default_factory=SmsConfig)
    pairing: PairingConfig = field(default_factory=PairingConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    callback: CallbackConfig = field(default_factory=CallbackConfig)
    services: ServicesConfig = field(default_factory=ServicesConfig)
    oneway: OneWayConfig = field(default_factory=OneWayConfig)
    accounts: AccountsConfig = field(default_factory=AccountsConfig)
    screening: ScreeningConfig = field(default_factory=ScreeningConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    notices: NoticesConfig = field(default_factory=NoticesConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    # Directory that relative paths in the file are resolved against.
    base_dir: Path = PROJECT_ROOT
    # Set only inside a worker process started by the supervisor (server/supervisor.py):
    # its index among server.workers. Not a key of the file.
    worker: int | None = None

    # -- derived values -------------------------------------------------------
    @property
    def node_id(self) -> str:
        if self.worker is not None:
            # Stable across restarts: a restarted worker recovers its predecessor's
            # open recordings at once (they carry the same node id).
            return f"{self.server.node_id or socket.gethostname()}-w{self.worker}"
        return self.server.node_id or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def worker_count(self) -> int:
        """Worker processes ``serve`` runs: server.workers, 0 meaning one per usable core."""
        return self.server.workers or usable_cores()

    def worker_port(self, index: int) -> int:
        """The loopback port worker ``index`` takes session sockets handed over on."""
        return (self.server.worker_port_base or self.server.port + 1) + index

    @property
    def internal_port(self) -> int | None:
        """This worker's loopback port; None in a single process (nothing to hand over)."""
        return None if self.worker is None else self.worker_port(self.worker)

    def as_worker(self, index: int) -> Config:
        if not 0 <= index < self.worker_count:
            raise ConfigError(f"server.workers: no worker {index} of {self.worker_count}")
        return dataclasses.replace(self, worker=index)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.agency.timezone)

    @property
    def recordings_path(self) -> Path:
        return self.resolve_path(self.storage.recordings_dir)

    @property
    def tls_enabled(self) -> bool:
        return bool(self.server.tls_cert and self.server.tls_key)

    def resolve_path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.base_dir / path)

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path made absolute against base_dir."""
        url = self.database.url
        for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
            if url.startswith(prefix):
                rest = url[len(prefix) :]
                if rest and not rest.startswith("/") and rest != ":memory:":
                    return prefix + str(self.resolve_path(rest))
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.database.url.startswith("sqlite")


_SECTIONS: dict[str, type[Any]] = {
    f.name: typing.get_type_hints(Config)[f.name]
    for f in dataclasses.fields(Config)
    if f.name not in ("base_dir", "worker")
}


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask: a container's or taskset's
    limit, not the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)  # pragma: no cover - not Linux


def _coerce(key: str, value: Any, hint: Any, *, from_env: bool) -> Any:
    """Turn a TOML or environment value into the field's declared type, or fail naming key."""
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if from_env and isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if from_env and isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if from_env and isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if origin is tuple:
        if from_env and isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ConfigError(f"{key}: invalid JSON list: {exc}") from None
            else:
                value = [part.strip() for part in text.split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    if isinstance(hint, types.UnionType):  # pragma: no cover - no such fields yet
        raise ConfigError(f"{key}: unsupported type")
    raise ConfigError(f"{key}: unsupported type {hint!r}")  # pragma: no cover


def _build_section(
    name: str, cls: type[Any], raw: Mapping[str, Any], env: Mapping[str, str]
) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: unknown key")
    values: dict[str, Any] = {}
    for fname in known:
        key = f"{name}.{fname}"
        env_name = f"{ENV_PREFIX}{name.upper()}_{fname.upper()}"
        if env_name in env:
            values[fname] = _coerce(env_name, env[env_name], hints[fname], from_env=True)
        elif fname in raw:
            values[fname] = _coerce(key, raw[fname], hints[fname], from_env=False)
    return cls(**values)


# RFC 7064 (stun:) and RFC 7065 (turn:, turns:) URIs: scheme ":" host [":" port] and, for
# TURN only, "?transport=udp|tcp". No "//", no user part: browsers refuse those, and a URL
# a browser refuses fails every call at its start, so it is refused here at config load.
_ICE_URL = re.compile(
    r"(?P<scheme>stun|turns?):"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?:\?transport=(?P<transport>udp|tcp))?"
)


def ice_url_problem(url: str) -> str | None:
    """Why ``url`` is not a usable STUN/TURN URL, or None when it is."""
    if not url.startswith(("stun:", "turn:", "turns:")):
        return "must start with stun:, turn: or turns:"
    match = _ICE_URL.fullmatch(url)
    if match is None:
        return (
            "is not a STUN/TURN URL: expected stun:HOST[:PORT],"
            " turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT][?transport=tcp]"
            " (no //, no user@, no spaces)"
        )
    if match["port"] is not None and not 1 <= int(match["port"]) <= 65535:
        return f"port {match['port']} is not 1..65535"
    if match["scheme"] == "stun" and match["transport"]:
        return "stun: URLs take no ?transport="
    if match["scheme"] == "turns" and match["transport"] == "udp":
        return "turns: runs over TLS, so ?transport=udp cannot work (use tcp or leave it out)"
    return None


def _validate(cfg: Config) -> None:
    for url in cfg.media.ice_servers:
        problem = ice_url_problem(url)
        if problem:
            raise ConfigError(f"media.ice_servers: {url!r} {problem}")
    if any(u.startswith(("turn:", "turns:")) for u in cfg.media.ice_servers) and not (
        cfg.media.turn_secret
    ):
        raise ConfigError("media.turn_secret: required when media.ice_servers lists a TURN server")
    if cfg.callback.order not in ("callback_first", "open_first"):
        raise ConfigError("callback.order: must be 'callback_first' or 'open_first'")
    if cfg.callback.max_attempts < 1:
        raise ConfigError("callback.max_attempts: must be at least 1")
    _validate_risk(cfg.risk)
    _validate_oneway(cfg.oneway)
    if cfg.oneway.sandbox_sequence and cfg.identity.provider != "sandbox":
        raise ConfigError(
            "oneway.sandbox_sequence: only in a sandbox (identity.provider = 'sandbox');"
            " A18.3 wants a random sequence for every attempt"
        )
    try:
        cfg.services.offer  # noqa: B018 - parsing is the check
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    # The outside services' sections ([identity], [sms], [accounts], the email part of
    # [notices]): provider, gateway settings and their ranges, as each adapter declares.
    problem = adapter_problem(cfg)
    if problem is not None:
        raise ConfigError(problem)
    if not 1.0 <= cfg.review.max_rate <= 16.0:
        raise ConfigError("review.max_rate: must be between 1 and 16")
    if cfg.review.max_gap_ms < 0:
        raise ConfigError("review.max_gap_ms: must be 0 or more")
    if cfg.retention.years < 1:
        raise ConfigError("retention.years: must be at least 1")
    if cfg.media.rejoin_grace_seconds < 0:
        raise ConfigError("media.rejoin_grace_seconds: must be 0 or more")
    if cfg.media.keyframe_interval_seconds < 1:
        raise ConfigError("media.keyframe_interval_seconds: must be at least 1")
    if cfg.media.max_video_kbps != 0 and not 100 <= cfg.media.max_video_kbps <= 20_000:
        raise ConfigError("media.max_video_kbps: must be 0 (no cap) or 100..20000")
    if cfg.media.audio_packet_ms not in (20, 40, 60):
        raise ConfigError("media.audio_packet_ms: must be 20, 40 or 60")
    if cfg.media.pipeline not in ("passthrough", "frames", "naive"):
        raise ConfigError("media.pipeline: must be 'passthrough', 'frames' or 'naive'")
    if cfg.media.turn_credential_ttl_seconds < 60:
        raise ConfigError("media.turn_credential_ttl_seconds: must be at least 60")
    if not 0 < cfg.server.port < 65536:
        raise ConfigError(f"server.port: must be 1..65535, got {cfg.server.port}")
    if cfg.queue.backend not in ("memory", "redis"):
        raise ConfigError(f"queue.backend: must be 'memory' or 'redis', got {cfg.queue.backend!r}")
    if not 10 <= cfg.redis.max_subscriptions <= 100_000:
        raise ConfigError("redis.max_subscriptions: must be 10..100000")
    _validate_workers(cfg)
    if not cfg.database.url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ConfigError(
            "database.url: must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
        )
    if cfg.security.cookie_secure not in ("auto", "always", "never"):
        raise ConfigError("security.cookie_secure: must be 'auto', 'always' or 'never'")
    if not cfg.server.body_read_timeout_seconds > 0:
        raise ConfigError("server.body_read_timeout_seconds: must be more than 0")
    if bool(cfg.server.tls_cert) != bool(cfg.server.tls_key):
        raise ConfigError("server.tls_cert: tls_cert and tls_key must be set together")
    for attr in (
        "login_max_failures",
        "login_max_failures_per_address",
        "lockout_base_seconds",
        "session_idle_minutes",
        "password_hash_concurrency",
    ):
        if getattr(cfg.security, attr) < 1:
            raise ConfigError(f"security.{attr}: must be at least 1")
    if cfg.security.password_hash_queue < 0:
        raise ConfigError("security.password_hash_queue: must be at least 0")
    if cfg.logging.format not in ("json", "text"):
        raise ConfigError("logging.format: must be 'json' or 'text'")
    if cfg.logging.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("logging.level: must be DEBUG, INFO, WARNING or ERROR")
    try:
        ZoneInfo(cfg.agency.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"agency.timezone: unknown time zone {cfg.agency.timezone!r}") from None
    if not 4 <= cfg.intake.otp_length <= 8:
        raise ConfigError("intake.otp_length: must be 4..8")
    if cfg.intake.min_age < 18:
        # A6: online opening is for adult natural persons only.
        raise ConfigError("intake.min_age: must be at least 18")
    for attr in (
        "image_max_mb",
        "image_max_decoded_mb",
        "image_decode_budget_mb",
        "otp_ttl_seconds",
        "otp_max_attempts",
        "otp_per_phone_per_hour",
        "otp_per_ip_per_hour",
        "session_hours",
        "writes_per_ip_per_minute",
        "identity_checks_per_hour",
        "network_check_valid_minutes",
        "network_checks_per_hour",
        "network_check_max_concurrent",
    ):
        if getattr(cfg.intake, attr) < 1:
            raise ConfigError(f"intake.{attr}: must be at least 1")
    if not 1 <= cfg.intake.network_check_seconds <= 30:
        raise ConfigError("intake.network_check_seconds: must be 1..30")
    if not 1 <= cfg.intake.network_check_connect_seconds <= 60:
        raise ConfigError("intake.network_check_connect_seconds: must be 1..60")
    if cfg.intake.network_check_failed_upstream_kbps > cfg.intake.network_check_weak_upstream_kbps:
        raise ConfigError(
            "intake.network_check_failed_upstream_kbps: must not exceed weak_upstream_kbps"
        )
    if cfg.intake.network_check_failed_rtt_ms < cfg.intake.network_check_weak_rtt_ms:
        raise ConfigError("intake.network_check_failed_rtt_ms: must be at least weak_rtt_ms")
    if cfg.intake.image_decode_budget_mb < cfg.intake.image_max_decoded_mb:
        raise ConfigError(
            "intake.image_decode_budget_mb: must be at least image_max_decoded_mb, "
            "or the largest image allowed could never be decoded within it"
        )
    if cfg.pairing.policy not in ("longest_idle", "random"):
        raise ConfigError("pairing.policy: must be 'longest_idle' or 'random'")
    for attr in (
        "offer_timeout_seconds",
        "investor_grace_seconds",
        "witness_presence_ttl_seconds",
        "heartbeat_seconds",
        "join_timeout_seconds",
        "session_token_ttl_seconds",
        "node_ttl_seconds",
    ):
        if getattr(cfg.pairing, attr) < 1:
            raise ConfigError(f"pairing.{attr}: must be at least 1")
    if cfg.pairing.heartbeat_seconds * 2 > cfg.pairing.witness_presence_ttl_seconds:
        raise ConfigError(
            "pairing.witness_presence_ttl_seconds: must be at least twice heartbeat_seconds"
        )
    if not 0.05 <= cfg.pairing.dispatch_interval_seconds <= 10:
        raise ConfigError("pairing.dispatch_interval_seconds: must be 0.05..10")
    for origin in cfg.server.frame_ancestors:
        if not origin.startswith("https://") or any(c in origin for c in " ;,'\""):
            raise ConfigError(f"server.frame_ancestors: {origin!r} must be an https:// origin")
    for origin in cfg.server.cluster_origins:
        if not origin.startswith(("https://", "http://")) or any(c in origin for c in " ;,'\""):
            raise ConfigError(f"server.cluster_origins: {origin!r} must be an http(s):// origin")


def _validate_oneway(o: OneWayConfig) -> None:
    checks = [
        (16 <= o.min_age <= o.max_age <= 120, "min_age/max_age: need 16 <= min_age <= max_age"),
        (1 <= o.instructions <= 6, "instructions: must be 1..6 (there are 6 kinds)"),
        (3.0 <= o.instruction_seconds <= 30.0, "instruction_seconds: must be 3..30"),
        (1 <= o.attempts <= 10, "attempts: must be 1..10"),
        (1 <= o.statement_takes <= 10, "statement_takes: must be 1..10"),
        (10.0 <= o.statement_max_seconds <= 300.0, "statement_max_seconds: must be 10..300"),
        (0.2 <= o.face_threshold <= 0.8, "face_threshold: must be 0.2..0.8"),
        (1 <= o.max_concurrent <= 64, "max_concurrent: must be 1..64"),
    ]
    for ok, problem in checks:
        if not ok:
            raise ConfigError(f"oneway.{problem}")
    known = {"turn_left", "turn_right", "tilt", "nod", "closer", "back"}
    unknown = [s for s in o.sandbox_sequence if s not in known]
    if unknown:
        raise ConfigError(f"oneway.sandbox_sequence: unknown {unknown}; use {sorted(known)}")


def _validate_risk(risk: RiskConfig) -> None:
    if risk.webhook_url and not risk.webhook_url.startswith(("http://", "https://")):
        raise ConfigError("risk.webhook_url: must start with http:// or https://")
    if risk.webhook_url and len(risk.webhook_secret) < 16:
        raise ConfigError("risk.webhook_secret: at least 16 characters when webhook_url is set")
    for key in ("webhook_timeout_seconds", "webhook_backoff_seconds", "sweep_seconds"):
        if getattr(risk, key) <= 0:
            raise ConfigError(f"risk.{key}: must be more than 0")
    if risk.webhook_backoff_max_seconds < risk.webhook_backoff_seconds:
        raise ConfigError("risk.webhook_backoff_max_seconds: below risk.webhook_backoff_seconds")
    if risk.webhook_max_attempts < 1:
        raise ConfigError("risk.webhook_max_attempts: must be at least 1")
    if risk.callback_deadline_hours < 1:
        raise ConfigError("risk.callback_deadline_hours: must be at least 1")


def _validate_workers(cfg: Config) -> None:
    if not 0 <= cfg.server.malloc_arenas <= 64:
        raise ConfigError("server.malloc_arenas: must be 0 (glibc's default) to 64")
    if cfg.server.event_loop not in ("asyncio", "uvloop"):
        raise ConfigError("server.event_loop: must be 'asyncio' or 'uvloop'")
    if cfg.server.event_loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise ConfigError(
            "server.event_loop: uvloop is not installed (pip install 'witness-server[fast]')"
        )
    if cfg.server.workers < 0:
        raise ConfigError(
            f"server.workers: must be 0 (one per core) or more, got {cfg.server.workers}"
        )
    if not 0 <= cfg.server.worker_port_base < 65536:
        raise ConfigError(
            f"server.worker_port_base: must be 0 (server.port + 1) or 1..65535, "
            f"got {cfg.server.worker_port_base}"
        )
    count = cfg.worker_count
    if count < 2:
        return
    if cfg.queue.backend != "redis" or cfg.is_sqlite:
        # Workers share the queue, node registry and data only through Redis and
        # PostgreSQL; the in-process queue and SQLite serve one process.
        raise ConfigError(
            f'server.workers: {count} workers need queue.backend = "redis" and a '
            f"PostgreSQL database.url (got queue.backend = {cfg.queue.backend!r}, "
            f"database.url {'sqlite' if cfg.is_sqlite else 'postgresql'}); "
            "set server.workers = 1 for one process"
        )
    first, last = cfg.worker_port(0), cfg.worker_port(count - 1)
    if last > 65535:
        raise ConfigError(f"server.worker_port_base: worker ports {first}..{last} go past 65535")
    if first <= cfg.server.port <= last:
        raise ConfigError(
            f"server.worker_port_base: worker ports {first}..{last} include server.port "
            f"{cfg.server.port}"
        )


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Load the config file (default: the project's config.toml), apply env, validate.

    ``overrides`` (section -> key -> value) are applied after the file and before the
    environment; tests and the CLI's --host/--port use them.
    """
    env = os.environ if env is None else env
    if path is None:
        path = env.get(f"{ENV_PREFIX}CONFIG") or DEFAULT_CONFIG_PATH
    file_path = Path(path)
    raw: dict[str, Any] = {}
    if file_path.exists():
        try:
            raw = tomllib.loads(file_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file_path}: invalid TOML: {exc}") from None
    elif path != DEFAULT_CONFIG_PATH:
        raise ConfigError(f"{file_path}: config file not found")
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    unknown = sorted(set(raw) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown section")
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        section_raw = raw.get(name, {})
        if not isinstance(section_raw, dict):
            raise ConfigError(f"{name}: expected a table")
        sections[name] = _build_section(name, cls, section_raw, env)
    _check_environment(env)
    cfg = Config(base_dir=file_path.resolve().parent, **sections)
    _validate(cfg)
    return cfg


# Variables of the project's own tools that share the prefix but are not configuration.
_NOT_CONFIG = (f"{ENV_PREFIX}TEST_", f"{ENV_PREFIX}BENCH_")
_NOT_CONFIG_NAMES = frozenset({f"{ENV_PREFIX}CONFIG", f"{ENV_PREFIX}TOKEN"})


def _check_environment(env: Mapping[str, str]) -> None:
    """A misspelt override would otherwise be ignored and the server would run on a
    default the operator did not choose: refuse to start, naming it."""
    known = {
        f"{ENV_PREFIX}{name.upper()}_{f.name.upper()}"
        for name, cls in _SECTIONS.items()
        for f in dataclasses.fields(cls)
    }
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var in known or var in _NOT_CONFIG_NAMES:
            continue
        if var.startswith(_NOT_CONFIG):
            continue
        close = difflib.get_close_matches(var, sorted(known), n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"{var}: unknown environment variable{hint}")
