"""The API's JSON bodies as pydantic models: what it accepts and what it answers.

Handlers read requests with ``read_model`` and write answers with ``answer``; openapi.py
builds ``components/schemas`` from these same classes. Meaning (an ID number's check
digit, a questionnaire's options, the order of a review) stays in domain/ and services/;
the models hold shape: types, lengths, enums, finite numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from aiohttp import web
from pydantic import BeforeValidator, ConfigDict, Field, StrictBool, StrictInt

from server.domain.aftercare import CallbackOutcome
from server.domain.alerts import AlertEvent as AlertEventName
from server.domain.identity_document import DocumentType, parse_document_type
from server.domain.intake import validate_phone
from server.http.json_body import Body

Notes = Annotated[str, Field(max_length=4000)]
# Normalized on the way in (+86, spaces, dashes); a wrong number answers phone_invalid.
Phone = Annotated[str, BeforeValidator(validate_phone), Field(description="mainland mobile")]


def _document_type(value: object) -> object:
    # The domain's own refusal (document_type_not_accepted) rather than a generic enum error.
    return parse_document_type(value) if isinstance(value, str) else value


def answer(model: Body, status: int = 200) -> web.Response:
    """A JSON answer; optional fields left unset are left out, as they always were."""
    return web.json_response(model.model_dump(mode="json", exclude_unset=True), status=status)


# ── investor: requests ────────────────────────────────────────────────────────────────


class OtpRequest(Body):
    field_codes: ClassVar[Mapping[str, str]] = {"phone": "phone_invalid"}
    phone: Phone


class SignIn(Body):
    field_codes: ClassVar[Mapping[str, str]] = {"phone": "phone_invalid", "code": "otp_format"}
    phone: Phone
    code: Annotated[str, Field(max_length=12, description="the code from the SMS")]
    want_token: Annotated[StrictBool, Field(description="apps: return a bearer token")] = False
    business_type: Annotated[
        str, Field(max_length=32, description="A20: open, or a holder's service (GET /options)")
    ] = "open"
    method: Annotated[
        str, Field(max_length=16, description="witnessed (video) or online (A22)")
    ] = "witnessed"


class IdentityForm(Body):
    """Identity data (A6). Dates are ISO 8601 (2030-12-31)."""

    name: Annotated[str, Field(max_length=200)]
    document_type: Annotated[DocumentType, BeforeValidator(_document_type)]
    id_number: Annotated[str, Field(max_length=40)]
    sex: Annotated[str, Field(max_length=1, description="M or F")]
    birth_date: Annotated[str, Field(max_length=10, json_schema_extra={"format": "date"})]
    valid_from: Annotated[str, Field(max_length=10, json_schema_extra={"format": "date"})]
    valid_until: Annotated[
        str | None, Field(max_length=10, json_schema_extra={"format": "date"})
    ] = None
    valid_until_long_term: Annotated[StrictBool, Field(description="长期 (resident ID only)")] = (
        False
    )
    nationality: Annotated[
        str | None, Field(max_length=3, description="CHN, HKG, MAC or TWN; from the document")
    ] = None
    address: Annotated[str, Field(max_length=400)]
    occupation: Annotated[str, Field(max_length=40, description="an id from GET /options")]
    email: Annotated[str | None, Field(max_length=260)] = None
    # A20–A22, a holder's service only: an account of theirs (the unified number or a
    # securities account), the accounts the service is for, and what it changes.
    account_number: Annotated[
        str | None, Field(max_length=20, description="holder's services: an account of theirs")
    ] = None
    accounts: Annotated[
        list[Annotated[str, Field(max_length=20)]] | None,
        Field(max_length=10, description="the accounts the service is for (default by service)"),
    ] = None
    details: Annotated[
        dict[Annotated[str, Field(max_length=40)], Annotated[str, Field(max_length=400)]] | None,
        Field(max_length=10, description="change_info, transfer_relationship, beijing_mark"),
    ] = None


class OnlineConfirmation(Body):
    confirm: Annotated[StrictBool, Field(description="the holder confirms the online service")]


class SuitabilityAnswers(Body):
    field_codes: ClassVar[Mapping[str, str]] = {"answers": "suitability_format"}
    answers: Annotated[
        dict[Annotated[str, Field(max_length=40)], list[Annotated[str, Field(max_length=40)]]],
        Field(max_length=200, description="question id → chosen option ids"),
    ]


class DisclosureAck(Body):
    # What the handler answered before the model, when the value was not the one wanted.
    field_codes: ClassVar[Mapping[str, str]] = {
        "version": "disclosure_version_mismatch",
        "scrolled_to_end": "disclosure_not_scrolled",
    }
    version: Annotated[str, Field(max_length=100)]
    scrolled_to_end: StrictBool


# ── investor: answers ─────────────────────────────────────────────────────────────────


class Choice(Body):
    id: str
    zh: str
    en: str


class ServiceChoice(Body):
    id: str
    zh: str
    en: str
    methods: list[str]


class Options(Body):
    document_types: list[Choice]
    occupations: list[Choice]
    services: list[ServiceChoice] = Field(default_factory=list)


class OtpIssued(Body):
    expires_in: int
    resend_after: int
    sandbox_code: Annotated[str | None, Field(description="sandbox mode only")] = None


class ApplicationView(Body):
    """The application as the investor sees it."""

    model_config = ConfigDict(extra="allow", frozen=True)
    id: str
    state: str
    next_step: str
    completed: list[str]
    identity: dict[str, Any] | None
    documents: dict[str, dict[str, Any]]
    suitability: dict[str, Any] | None
    disclosure: dict[str, Any] | None
    identity_check: dict[str, Any] | None
    business_type: str = "open"
    method: str = "witnessed"
    service: Annotated[
        dict[str, Any] | None,
        Field(description="a holder's service: accounts (masked) and the account system's check"),
    ] = None


class ApplicationAnswer(Body):
    application: ApplicationView
    csrf_token: Annotated[str | None, Field(description="for writes when signed in by cookie")] = (
        None
    )


class SignedIn(Body):
    application: ApplicationView
    csrf_token: str
    resumed: bool
    expires_in: int
    token: Annotated[str | None, Field(description="only when want_token was sent")] = None


class SignedOut(Body):
    signed_out: bool


class AccountAnswer(Body):
    unified_account_number: str | None
    sub_accounts: dict[str, Any]
    status: str
    opening_method: str


class QuestionOption(Body):
    id: str
    zh: str
    en: str


class Question(Body):
    id: str
    zh: str
    en: str
    multiple: bool
    options: list[QuestionOption]


class QuestionnaireAnswer(Body):
    version: str
    questions: list[Question]


class Disclosure(Body):
    version: str
    title_zh: str
    title_en: str
    body_zh: str
    body_en: str
    min_read_seconds: int


# ── staff: requests ───────────────────────────────────────────────────────────────────


class PlaybackReport(Body):
    """A span the reviewer's player played."""

    field_codes: ClassVar[Mapping[str, str]] = {
        k: "bad_report" for k in ("recording_id", "from_ms", "to_ms", "rate")
    }
    recording_id: Annotated[str, Field(max_length=64)]
    from_ms: Annotated[StrictInt, Field(ge=0)]
    to_ms: Annotated[StrictInt, Field(ge=0)]
    rate: Annotated[float, Field(gt=0, le=16)]
    visible: StrictBool = False


class OpenedDocument(Body):
    field_codes: ClassVar[Mapping[str, str]] = {"item": "bad_item"}
    item: Annotated[str, Field(max_length=64)]


class Decision(Body):
    field_codes: ClassVar[Mapping[str, str]] = {
        "decision": "bad_decision",
        "reason_code": "reason_required",
    }
    decision: Literal["approve", "reject"]
    reason_code: Annotated[str | None, Field(max_length=64)] = None
    notes: Notes = ""


class AlertAction(Body):
    """A compliance officer's step on a risk alert (A23); resolve, escalate and reopen
    need a note."""

    field_codes: ClassVar[Mapping[str, str]] = {"event": "bad_event", "note": "note_required"}
    event: AlertEventName
    note: Annotated[str, Field(max_length=2000)] = ""


class ScreeningDecisionBody(Body):
    """A compliance officer's decision on a possible AML match (A3), with its reason."""

    field_codes: ClassVar[Mapping[str, str]] = {
        "decision": "bad_decision",
        "reason": "reason_required",
    }
    decision: Literal["clear", "confirm"]
    reason: Annotated[str, Field(min_length=4, max_length=1000)]


class CallbackRecord(Body):
    field_codes: ClassVar[Mapping[str, str]] = {"outcome": "bad_outcome"}
    outcome: CallbackOutcome
    notes: Notes = ""


# ── retrieval ─────────────────────────────────────────────────────────────────────────


class EvidenceKey(Body):
    algorithm: Literal["Ed25519"]
    key_id: str
    public_key_pem: str


class ErrorDetail(Body):
    code: str
    message: str
    message_zh: str
    details: Annotated[
        dict[str, Any] | None, Field(description="e.g. field: the failing field")
    ] = None


class ErrorAnswer(Body):
    """Every error: {error: {code, message, message_zh, details?}}."""

    error: ErrorDetail


# ── investor: the pre-call check (issue 16) ─────────────────────────────────────────


class NetworkProbeOffer(Body):
    field_codes: ClassVar[Mapping[str, str]] = {"sdp": "network_check_offer_invalid"}
    sdp: Annotated[
        str,
        Field(
            min_length=10,
            max_length=20000,
            description="the browser's offer (a data channel and a send-only video track), "
            "ICE gathering complete: no trickle",
        ),
    ]


CandidateType = Literal["host", "srflx", "prflx", "relay"]
WireProtocol = Literal["udp", "tcp", "tls"]


class NetworkClientStats(Body):
    candidate_type: Annotated[
        CandidateType | None, Field(description="local candidate of the selected pair")
    ] = None
    protocol: Annotated[WireProtocol | None, Field(description="of that candidate")] = None
    relay_protocol: Annotated[
        WireProtocol | None, Field(description="browser to TURN, when relayed")
    ] = None
    rtt_ms: Annotated[StrictInt | None, Field(ge=0, le=60000)] = None
    outgoing_kbps: Annotated[
        StrictInt | None, Field(ge=0, le=1_000_000, description="availableOutgoingBitrate")
    ] = None
    error: Annotated[
        str | None, Field(max_length=40, pattern=r"^[a-z_]+$", description="the page's code")
    ] = None


class NetworkCheckReport(Body):
    field_codes: ClassVar[Mapping[str, str]] = {"token": "network_check_token_invalid"}
    token: Annotated[
        str | None,
        Field(
            max_length=4000,
            description="the sealed result the test connection sent on its data channel; "
            "null when it never connected",
        ),
    ] = None
    camera_ok: StrictBool
    microphone_ok: StrictBool
    client: NetworkClientStats = NetworkClientStats()


class NetworkCheckReason(Body):
    code: str
    zh: str
    en: str


class NetworkCheckView(Body):
    id: str
    created_at: str
    verdict: Literal["ok", "weak", "failed"]
    path: Literal["direct", "relay", "none"]
    protocol: WireProtocol | None
    rtt_ms: int | None
    upstream_kbps: int | None
    camera_ok: bool
    microphone_ok: bool
    reasons: list[NetworkCheckReason]
    fresh: Annotated[bool, Field(description="recent enough to join the queue with")]
    may_join: bool


class NetworkCheckInfo(Body):
    check: NetworkCheckView | None
    required: bool
    ice_servers: Annotated[
        list[dict[str, Any]], Field(description="RTCPeerConnection iceServers: the call's")
    ]
    seconds: float
    connect_seconds: float


class NetworkProbeAnswer(Body):
    probe_id: str
    sdp: str
    seconds: float


class NetworkCheckAnswer(Body):
    check: NetworkCheckView


class OneWayOffer(Body):
    """A18: whether the investor may record alone now, and if not why."""

    offered: bool
    reason: Annotated[
        str | None,
        Field(description="not_enabled | not_ready | opening_only | attempts_used | not_eligible"),
    ]
    attempts_left: int
    message: str | None = None
    message_zh: str | None = None


class OneWayStarted(Body):
    """A18: an attempt placed on a media node; open ``socket_url`` with the token."""

    session_id: str
    attempt: int
    token: str
    socket_url: str
    instructions: int


REQUESTS: tuple[type[Body], ...] = (
    OtpRequest,
    SignIn,
    IdentityForm,
    SuitabilityAnswers,
    DisclosureAck,
    PlaybackReport,
    OpenedDocument,
    Decision,
    ScreeningDecisionBody,
    CallbackRecord,
    AlertAction,
    NetworkProbeOffer,
    NetworkCheckReport,
)
ANSWERS: tuple[type[Body], ...] = (
    Options,
    OtpIssued,
    ApplicationAnswer,
    SignedIn,
    SignedOut,
    AccountAnswer,
    QuestionnaireAnswer,
    Disclosure,
    EvidenceKey,
    ErrorAnswer,
    NetworkCheckInfo,
    NetworkProbeAnswer,
    NetworkCheckAnswer,
    OneWayOffer,
    OneWayStarted,
)
