"""What every request handler and background task needs, opened once per process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.adapters.account_system import ACCOUNTS, AccountSystem
from server.adapters.email import EMAIL
from server.adapters.identity_registry import IDENTITY, IdentityRegistry
from server.adapters.kinds import AdapterConfigError, AdapterKind, BuildContext, build
from server.adapters.screening import SCREENING
from server.adapters.sms import SMS, SmsSender
from server.config import Config, ConfigError
from server.content import (
    builtin_script_path,
    load_intake_content,
    load_risk_rules,
    load_script,
)
from server.crypto import DataProtector, decode_key, load_or_create_key
from server.domain.business import BusinessType
from server.domain.risk_rules import RuleSet
from server.domain.script import Script
from server.domain.suitability import DisclosureDocument, Questionnaire
from server.evidence import signing_key
from server.queue import create_backend
from server.queue.base import NodeInfo, QueueBackend
from server.services.aftercare.account_services import AccountServices
from server.services.aftercare.callback import Aftercare
from server.services.aftercare.confirmation import Notices
from server.services.compliance.alert_desk import AlertDesk
from server.services.compliance.alerts import RiskWatch
from server.services.compliance.screening import Screener
from server.services.compliance.screening_desk import ScreeningDesk
from server.services.compliance.webhook import WebhookSender
from server.services.documents import StaffDocuments
from server.services.intake.decode_budget import DecodeBudget
from server.services.intake.images import ImageLimits
from server.services.intake.network_check import NetworkChecks
from server.services.loop_probe import LoopLagProbe
from server.services.oneway.service import OneWay, default_analyzer_factory
from server.services.pairing.dispatcher import Dispatcher
from server.services.pairing.placement import Placer
from server.services.pairing.queueing import Pairing
from server.services.password_checks import PasswordChecks
from server.services.review.desk import ReviewDesk
from server.services.witnessing.actions import Witnessing
from server.services.witnessing.media_manager import MediaManager
from server.store.db import make_engine, make_sessionmaker

log = logging.getLogger(__name__)
_MB = 1024 * 1024


@dataclass
class Metrics:
    registry: CollectorRegistry
    http_requests: Counter
    http_latency: Histogram
    queue_length: Gauge
    live_sessions: Gauge
    recording_bytes: Gauge
    loop_lag: Histogram
    loop_lag_max: Gauge
    media_answer: Histogram

    def live_session_count(self) -> int:
        """This node's load for placement: session sockets it holds."""
        return int(self.registry.get_sample_value("witness_live_sessions") or 0)

    @classmethod
    def create(cls) -> Metrics:
        # One registry per app, so tests can build many apps in one process.
        reg = CollectorRegistry()
        return cls(
            registry=reg,
            http_requests=Counter(
                "witness_http_requests",
                "HTTP requests",
                ["method", "route", "status"],
                registry=reg,
            ),
            http_latency=Histogram(
                "witness_http_request_seconds",
                "HTTP request latency",
                ["route"],
                registry=reg,
            ),
            queue_length=Gauge(
                "witness_queue_length", "Investors waiting for a witness", registry=reg
            ),
            live_sessions=Gauge(
                "witness_live_sessions", "Witness sessions in progress", registry=reg
            ),
            recording_bytes=Gauge(
                "witness_recording_bytes",
                "Bytes written to recordings by this node",
                registry=reg,
            ),
            loop_lag=Histogram(
                "witness_event_loop_lag_seconds",
                "How late the event loop woke for a timer (services/loop_probe.py)",
                buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
                registry=reg,
            ),
            loop_lag_max=Gauge(
                "witness_event_loop_lag_max_seconds",
                "Largest event-loop lag of the last minute",
                registry=reg,
            ),
            media_answer=Histogram(
                "witness_media_answer_seconds",
                "From a party's WebRTC offer reaching this node to its answer (the"
                " session opened if new, the leg negotiated, its recording row written)",
                buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0),
                registry=reg,
            ),
        )


@dataclass
class Runtime:
    config: Config
    engine: AsyncEngine
    db: async_sessionmaker[AsyncSession]
    protector: DataProtector
    metrics: Metrics
    registry: IdentityRegistry
    sms: SmsSender
    questionnaire: Questionnaire
    disclosure: DisclosureDocument
    image_limits: ImageLimits
    # Image decodes at once, bounded by the memory they take (intake.image_decode_budget_mb)
    # and by the cores.
    image_slots: DecodeBudget
    queue: QueueBackend
    pairing: Pairing
    placer: Placer
    dispatcher: Dispatcher
    media: MediaManager
    evidence_key: Ed25519PrivateKey
    review: ReviewDesk
    accounts: AccountSystem
    aftercare: Aftercare
    notices: Notices
    witnessing: Witnessing
    documents: StaffDocuments
    # Staff passwords are checked in threads of their own, a bounded number at once.
    password_checks: PasswordChecks
    loop_probe: LoopLagProbe
    # A23: risk rules as events happen, the alert desk, the alert webhook.
    risk: RiskWatch
    alert_desk: AlertDesk
    alert_webhook: WebhookSender
    # A3: AML screening before queueing and approval, and the compliance decisions.
    screener: Screener
    screening_desk: ScreeningDesk
    # The investor's pre-call check: test connections on this node, results, the gate.
    network_checks: NetworkChecks
    # A18: one-way video attempts on this node.
    oneway: OneWay


def open_protector(config: Config) -> DataProtector:
    return DataProtector(load_data_key(config))


def load_data_key(config: Config) -> bytes:
    key, created = load_or_create_key(
        config.security.data_key,
        config.resolve_path(config.security.data_key_file),
        create=config.security.create_key_file,
    )
    if created:
        log.warning(
            "generated a new data key",
            extra={"key_file": config.security.data_key_file, "hint": "back it up"},
        )
    return key


def load_evidence_key(config: Config) -> Ed25519PrivateKey:
    inline = decode_key(config.security.evidence_key) if config.security.evidence_key else None
    return signing_key(evidence_key=inline, data_key=load_data_key(config))


def node_url(config: Config) -> str:
    """The base URL participants of sessions placed on this node are sent to."""
    if config.server.public_url:
        return config.server.public_url.rstrip("/")
    scheme = "https" if config.tls_enabled else "http"
    return f"{scheme}://{config.server.host}:{config.server.port}"


def internal_url(config: Config) -> str:
    """A worker's loopback URL for session sockets handed over by the other workers of its
    machine (server/web/ws_proxy.py); "" for a single process."""
    port = config.internal_port
    return f"http://127.0.0.1:{port}" if port is not None else ""


_S = TypeVar("_S")
_A = TypeVar("_A")


def build_adapter(kind: AdapterKind[_S, _A], section: _S, config: Config) -> _A:
    """The adapter a config section names (server/adapters/kinds.py); a section that
    cannot build it stops the start like any other bad key."""
    try:
        return build(kind, section, BuildContext(resolve_path=config.resolve_path))
    except AdapterConfigError as exc:
        raise ConfigError(str(exc)) from None


def load_content(config: Config) -> tuple[Questionnaire, DisclosureDocument]:
    path = config.resolve_path(config.intake.content_file) if config.intake.content_file else None
    try:
        return load_intake_content(path)
    except ValueError as exc:
        raise ConfigError(f"intake.content_file: {exc}") from None


def load_witness_scripts(config: Config) -> dict[BusinessType, Script]:
    """The witnessing script of every business offered by witnessed video (A17.4, A20):
    the opening one from ``media.script_file`` (else the built-in ``script.toml``), each
    service's from ``<services.scripts_dir>/<type>.toml`` where that file exists (else the
    built-in one). A broken file stops the start, naming the file and the key."""
    scripts: dict[BusinessType, Script] = {}
    path = config.resolve_path(config.media.script_file) if config.media.script_file else None
    try:
        scripts[BusinessType.OPEN] = load_script(path)
    except ValueError as exc:
        raise ConfigError(f"media.script_file: {exc}") from None
    directory = (
        config.resolve_path(config.services.scripts_dir) if config.services.scripts_dir else None
    )
    if directory is not None and not directory.is_dir():
        raise ConfigError(f"services.scripts_dir: {directory}: not a directory")
    for kind in config.services.offer.witnessed:
        if kind is BusinessType.OPEN:
            continue
        own = directory / f"{kind.value}.toml" if directory is not None else None
        source = own if own is not None and own.is_file() else builtin_script_path(kind.value)
        try:
            scripts[kind] = load_script(source)
        except ValueError as exc:
            raise ConfigError(f"services.scripts_dir: {exc}") from None
    return scripts


def load_rule_set(config: Config) -> RuleSet:
    path = config.resolve_path(config.risk.rules_file) if config.risk.rules_file else None
    try:
        return load_risk_rules(path)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"risk.rules_file: {exc}") from None


@asynccontextmanager
async def open_runtime(config: Config) -> AsyncIterator[Runtime]:
    protector = open_protector(config)
    questionnaire, disclosure = load_content(config)
    rule_set = load_rule_set(config)
    metrics = Metrics.create()
    registry = build_adapter(IDENTITY, config.identity, config)
    sms = build_adapter(SMS, config.sms, config)
    accounts = build_adapter(ACCOUNTS, config.accounts, config)
    engine = make_engine(
        config.database_url, echo=config.database.echo, pool_size=config.database.pool_size
    )
    db = make_sessionmaker(engine)
    notices = Notices(
        db=db,
        protector=protector,
        sms=sms,
        email=build_adapter(EMAIL, config.notices, config),
        agency=config.agency.name,
        font_path=Path(config.notices.pdf_font),
    )
    risk = RiskWatch(
        db=db,
        protector=protector,
        rule_set=rule_set,
        config=config.risk,
        callback_max_attempts=config.callback.max_attempts,
        registry=metrics.registry,
    )
    aftercare = Aftercare(
        on_callback=risk.after_callback,
        db=db,
        protector=protector,
        accounts=accounts,
        config=config.callback,
        on_active=notices.account_opened,
        services=AccountServices(
            db=db,
            protector=protector,
            accounts=accounts,
            offer=config.services.offer,
            on_concluded=notices.service_concluded,
        ),
    )
    queue = create_backend(
        config.queue.backend,
        redis_url=config.redis.url,
        key_prefix=config.redis.key_prefix,
        max_subscriptions=config.redis.max_subscriptions,
    )
    node = NodeInfo(
        config.node_id,
        node_url(config),
        0,
        0.0,
        internal_url=internal_url(config),
        machine=socket.gethostname(),
    )
    screener = Screener(
        db=db, protector=protector, adapter=build_adapter(SCREENING, config.screening, config)
    )
    pairing = Pairing(
        backend=queue,
        db=db,
        config=config.pairing,
        node_id=config.node_id,
        before_queue=screener.before_queue,
    )
    placer = Placer(pairing=pairing, protector=protector, self_node=node)
    dispatcher = Dispatcher(
        pairing=pairing,
        placer=placer,
        protector=protector,
        node=node,
        live_sessions=metrics.live_session_count,
        queue_gauge=metrics.queue_length.set,
    )
    media = MediaManager(
        config=config.media,
        db=db,
        root=config.recordings_path,
        node_id=config.node_id,
        on_bytes=metrics.recording_bytes.inc,
        on_answer=metrics.media_answer.observe,
    )
    network_checks = NetworkChecks(
        db=db, protector=protector, intake=config.intake, ice_servers=media.ice_servers
    )
    password_checks = PasswordChecks(
        concurrency=config.security.password_hash_concurrency,
        queue=config.security.password_hash_queue,
    )
    witnessing = Witnessing(
        placer=placer,
        scripts=load_witness_scripts(config),
        agency=config.agency,
        files_root=config.recordings_path,
        on_verdict=risk.after_verdict,
    )
    oneway = OneWay(
        config=config,
        db=db,
        protector=protector,
        media=media,
        files_root=config.recordings_path,
        analyzer_factory=default_analyzer_factory,
        session_token_ttl=config.pairing.session_token_ttl_seconds,
    )
    # The automatic still is shown on the witness's desk with its face score (issue 17).
    media.on_auto_still = witnessing.show_auto_still
    # Its models load before any call: the load stalls the event loop (face.py).
    face_warm_up = asyncio.create_task(witnessing.warm_up())
    # UNAVAILABLE screenings are retried with back-off in the background (A3).
    screening_retries = asyncio.create_task(screener.run_forever())
    try:
        yield Runtime(
            config=config,
            engine=engine,
            db=db,
            protector=protector,
            metrics=metrics,
            registry=registry,
            sms=sms,
            questionnaire=questionnaire,
            disclosure=disclosure,
            image_limits=ImageLimits(
                max_bytes=config.intake.image_max_mb * _MB,
                max_decoded_bytes=config.intake.image_max_decoded_mb * _MB,
            ),
            image_slots=DecodeBudget(
                config.intake.image_decode_budget_mb * _MB, max_running=os.cpu_count() or 1
            ),
            queue=queue,
            pairing=pairing,
            placer=placer,
            dispatcher=dispatcher,
            media=media,
            evidence_key=load_evidence_key(config),
            review=ReviewDesk(
                db=db,
                config=config.review,
                aftercare=aftercare,
                before_approval=screener.before_approval,
                on_decided=risk.after_review,
                on_verdict=risk.after_verdict,
            ),
            risk=risk,
            alert_desk=AlertDesk(db=db, rule_set=rule_set, counters=risk.counters),
            alert_webhook=WebhookSender(
                db=db, config=config.risk, counters=risk.counters, wake=risk.deliveries_waiting
            ),
            screener=screener,
            screening_desk=ScreeningDesk(db=db, protector=protector),
            network_checks=network_checks,
            accounts=accounts,
            aftercare=aftercare,
            notices=notices,
            documents=StaffDocuments(db=db, root=config.recordings_path),
            password_checks=password_checks,
            loop_probe=LoopLagProbe(histogram=metrics.loop_lag, max_gauge=metrics.loop_lag_max),
            witnessing=witnessing,
            oneway=oneway,
        )
    finally:
        face_warm_up.cancel()
        # Without the aid, or with it broken, stills simply come without a score.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await face_warm_up
        screener.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await screening_retries
        await network_checks.close()
        await oneway.close_all()
        await media.close_all()
        await accounts.close()
        await queue.close()
        await registry.close()
        await screener.adapter.close()
        await sms.close()
        password_checks.close()
        await engine.dispose()
