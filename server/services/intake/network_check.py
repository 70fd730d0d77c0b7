"""The investor's pre-call check (issue 16): a test connection to this media node, then
the result stored with the application, and the gate before queueing.

1. ``info``: the ICE servers a call would use (so the test takes the same path), the
   latest stored check, and whether one is required.
2. ``start_probe``: rate-limited per application; answers the browser's offer with a
   bounded probe (``media/probe.py``) that sends its measurements back, sealed with a
   MAC, on the data channel. The seal is what lets the result be posted to any worker.
3. ``record``: the browser posts the sealed measurements with what only it knows (camera,
   microphone, the candidate pair's type and protocol, its own bitrate estimate); the
   verdict comes from the server's figures (``domain/network_check.py``), stored with
   its audit entry in one transaction.
4. ``require_passed``: joining the queue needs a recent check that did not fail.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.audit import append_audit
from server.config import IntakeConfig
from server.crypto import DataProtector
from server.domain.application import ApplicationState
from server.domain.errors import Conflict, InvalidInput
from server.domain.network_check import (
    Measurement,
    NetworkPath,
    Protocol,
    Thresholds,
    Verdict,
    decide,
    path_of,
    reason,
)
from server.media.probe import ProbeNode, ProbeResult
from server.services import rate_limit
from server.services.applications import get_application
from server.store.db import reading
from server.store.models import NetworkCheck

_SEAL_PURPOSE = "network_probe"
_SEAL_MAX_AGE = 600  # seconds: a measurement is posted right after it is taken
_PROBE_STATES = (ApplicationState.IDENTITY_VERIFIED.value,)


NO_WEBRTC = "no_webrtc"  # the page's code: no RTCPeerConnection or getUserMedia


@dataclass(frozen=True)
class ClientReport:
    """What only the browser knows; shapes checked by the API's model."""

    camera_ok: bool
    microphone_ok: bool
    candidate_type: str | None = None  # local candidate of the selected pair
    protocol: str | None = None  # of that candidate
    relay_protocol: str | None = None  # browser ↔ TURN, when relayed
    rtt_ms: int | None = None  # the pair's currentRoundTripTime
    outgoing_kbps: int | None = None  # availableOutgoingBitrate
    error: str | None = None  # why the page could not connect, its own code


def thresholds(cfg: IntakeConfig) -> Thresholds:
    return Thresholds(
        weak_upstream_kbps=cfg.network_check_weak_upstream_kbps,
        weak_rtt_ms=cfg.network_check_weak_rtt_ms,
        failed_upstream_kbps=cfg.network_check_failed_upstream_kbps,
        failed_rtt_ms=cfg.network_check_failed_rtt_ms,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(protector: DataProtector, payload: dict[str, Any]) -> str:
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return f"{_b64(body)}.{_b64(protector.mac(body, purpose=_SEAL_PURPOSE))}"


def _invalid_token() -> InvalidInput:
    return InvalidInput(
        "network_check_token_invalid",
        "The test connection's result is not valid or has expired; run the check again.",
        "测试结果无效或已过期，请重新检测。",
        details={"field": "token"},
    )


def unseal(
    protector: DataProtector, token: str, *, application_id: str, now: float
) -> dict[str, Any]:
    try:
        body_text, mac_text = token.split(".")
        body, mac = _unb64(body_text), _unb64(mac_text)
    except (ValueError, binascii.Error):
        raise _invalid_token() from None
    if not hmac.compare_digest(mac, protector.mac(body, purpose=_SEAL_PURPOSE)):
        raise _invalid_token()
    payload = json.loads(body)
    if payload.get("application_id") != application_id:
        raise _invalid_token()
    if not 0 <= now - float(payload.get("issued_at", 0)) <= _SEAL_MAX_AGE:
        raise _invalid_token()
    return dict(payload)


def view(check: NetworkCheck | None, *, now: datetime, valid_minutes: int) -> dict[str, Any] | None:
    if check is None:
        return None
    created = check.created_at if check.created_at.tzinfo else check.created_at.replace(tzinfo=UTC)
    codes = (check.details or {}).get("reasons", [])
    fresh = now - created <= timedelta(minutes=valid_minutes)
    return {
        "id": check.id,
        "created_at": created.isoformat(),
        "verdict": check.verdict,
        "path": check.path,
        "protocol": check.protocol,
        "rtt_ms": check.rtt_ms,
        "upstream_kbps": check.upstream_kbps,
        "camera_ok": check.camera_ok,
        "microphone_ok": check.microphone_ok,
        "reasons": [reason(c).__dict__ for c in codes if isinstance(c, str)],
        "fresh": fresh,
        "may_join": fresh and check.verdict != Verdict.FAILED.value,
    }


async def latest(tx: AsyncSession, application_id: str) -> NetworkCheck | None:
    return (
        await tx.execute(
            select(NetworkCheck)
            .where(NetworkCheck.application_id == application_id)
            .order_by(NetworkCheck.created_at.desc(), NetworkCheck.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


class NetworkChecks:
    def __init__(
        self,
        *,
        db: async_sessionmaker[AsyncSession],
        protector: DataProtector,
        intake: IntakeConfig,
        ice_servers: Callable[[str], list[dict[str, Any]]],
    ) -> None:
        self.db = db
        self.protector = protector
        self.intake = intake
        # The call's own ICE/TURN servers for a party (witnessing's TURN credentials,
        # handed in: intake comes before witnessing and does not import it).
        self.ice_servers = ice_servers
        self.probes = ProbeNode(
            max_concurrent=intake.network_check_max_concurrent,
            connect_seconds=intake.network_check_connect_seconds,
            measure_seconds=intake.network_check_seconds,
        )

    async def info(self, application_id: str) -> dict[str, Any]:
        async with self.db.begin() as tx:
            check = await latest(tx, application_id)
        return {
            "check": view(
                check, now=datetime.now(UTC), valid_minutes=self.intake.network_check_valid_minutes
            ),
            "required": self.intake.require_network_check,
            # The call's own servers, so the test finds the path the call would.
            "ice_servers": self.ice_servers("investor"),
            "seconds": self.intake.network_check_seconds,
            "connect_seconds": self.intake.network_check_connect_seconds,
        }

    async def start_probe(self, application_id: str, offer_sdp: str) -> dict[str, Any]:
        async with self.db.begin() as tx:
            app = await get_application(tx=tx, application_id=application_id)
            if app.state not in _PROBE_STATES:
                raise Conflict(
                    "network_check_not_now",
                    "The connection test is for the step before the witness queue.",
                    "网络检测仅在加入见证排队前进行。",
                    details={"state": app.state},
                )
        # Committed on its own: a probe that fails afterwards still counts.
        await rate_limit.hit_now(
            self.db,
            bucket="network_check",
            key_hash=self.protector.lookup_hash(application_id, kind="application"),
            limit=self.intake.network_checks_per_hour,
            window=timedelta(hours=1),
        )
        probe_id = secrets.token_urlsafe(12)

        def sealed(result: ProbeResult) -> dict[str, Any]:
            payload = {**result.to_dict(), "application_id": application_id}
            payload["issued_at"] = int(time.time())
            shown = {k: payload[k] for k in ("connected", "rtt_ms", "upstream_kbps")}
            return {"measurement": shown, "token": seal(self.protector, payload)}

        sdp = await self.probes.start(
            probe_id,
            offer_sdp,
            ice_servers=self.ice_servers("media-node"),
            seal=sealed,
        )
        return {"probe_id": probe_id, "sdp": sdp, "seconds": self.intake.network_check_seconds}

    async def record(
        self, application_id: str, *, token: str | None, client: ClientReport
    ) -> dict[str, Any]:
        probe: dict[str, Any] = {}
        if token is not None:
            probe = unseal(self.protector, token, application_id=application_id, now=time.time())
        connected = bool(probe.get("connected"))
        rtt = probe.get("rtt_ms")
        upstream = probe.get("upstream_kbps")
        verdict, reasons = decide(
            Measurement(
                camera_ok=client.camera_ok,
                microphone_ok=client.microphone_ok,
                connected=connected,
                rtt_ms=rtt if isinstance(rtt, int) else None,
                upstream_kbps=upstream if isinstance(upstream, int) else None,
                webrtc=client.error != NO_WEBRTC,
            ),
            thresholds(self.intake),
        )
        path = path_of(client.candidate_type) if connected else NetworkPath.NONE
        if connected and path is NetworkPath.NONE:
            path = NetworkPath.DIRECT  # connected, the page could not tell how: no relay seen
        wire = client.relay_protocol if path is NetworkPath.RELAY else client.protocol
        protocol = wire if wire in {p.value for p in Protocol} and connected else None
        async with self.db.begin() as tx:
            app = await get_application(tx=tx, application_id=application_id)
            if app.state not in _PROBE_STATES:
                raise Conflict(
                    "network_check_not_now",
                    "The connection test is for the step before the witness queue.",
                    "网络检测仅在加入见证排队前进行。",
                    details={"state": app.state},
                )
            check = NetworkCheck(
                application_id=application_id,
                verdict=verdict.value,
                path=path.value,
                protocol=protocol,
                rtt_ms=rtt if connected else None,
                upstream_kbps=upstream if connected else None,
                camera_ok=client.camera_ok,
                microphone_ok=client.microphone_ok,
                details={
                    "reasons": [r.code for r in reasons],
                    "probe": {k: v for k, v in probe.items() if k != "application_id"},
                    "client": {k: v for k, v in client.__dict__.items() if v is not None},
                },
            )
            tx.add(check)
            await tx.flush()
            await append_audit(
                tx,
                actor="investor",
                action="intake.network_checked",
                subject_type="application",
                subject_id=application_id,
                details={
                    "check_id": check.id,
                    "verdict": verdict.value,
                    "path": path.value,
                    "rtt_ms": check.rtt_ms,
                    "upstream_kbps": check.upstream_kbps,
                },
            )
            await tx.refresh(check)
        shown = view(
            check, now=datetime.now(UTC), valid_minutes=self.intake.network_check_valid_minutes
        )
        assert shown is not None
        return shown

    async def require_passed(self, application_id: str) -> None:
        """Before joining the queue: a recent check that did not fail (when required);
        never with a browser whose last check found it cannot make calls (issue 17)."""
        async with reading(self.db) as tx:  # on every join: a read
            app = await get_application(tx=tx, application_id=application_id)
            if app.state == ApplicationState.QUEUED.value:
                return  # already in (another tab): joining again is idempotent
            shown = view(
                await latest(tx, application_id),
                now=datetime.now(UTC),
                valid_minutes=self.intake.network_check_valid_minutes,
            )
        if shown is not None and any(r["code"] == NO_WEBRTC for r in shown["reasons"]):
            no_webrtc = reason(NO_WEBRTC)
            raise Conflict(
                "browser_cannot_call", no_webrtc.en, no_webrtc.zh, details={"reasons": [NO_WEBRTC]}
            )
        if not self.intake.require_network_check:
            return
        if shown is None or not shown["fresh"]:
            raise Conflict(
                "network_check_required",
                "Check your camera, microphone and network before joining the queue.",
                "加入排队前，请先检测摄像头、麦克风和网络。",
            )
        if shown["verdict"] == Verdict.FAILED.value:
            raise Conflict(
                "network_check_failed",
                "The last check found that this device or network cannot carry a video "
                "call; fix what it says and check again.",
                "上次检测发现当前设备或网络无法进行视频通话，请按提示处理后重新检测。",
                details={"reasons": [r["code"] for r in shown["reasons"]]},
            )

    async def close(self) -> None:
        await self.probes.close()
