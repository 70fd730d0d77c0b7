"""Investor intake JSON API, /api/v1/investor/ (A5: the agency's site or its own app).

The investor page drives exactly this API, so a broker's mobile app can too: sign in with
``{"want_token": true}`` and send ``Authorization: Bearer <token>`` instead of the cookie.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from server.api.schemas import (
    AccountAnswer,
    ApplicationAnswer,
    ApplicationView,
    Choice,
    Disclosure,
    DisclosureAck,
    IdentityForm,
    NetworkCheckAnswer,
    NetworkCheckInfo,
    NetworkCheckReport,
    NetworkProbeAnswer,
    NetworkProbeOffer,
    OnlineConfirmation,
    Options,
    OtpIssued,
    OtpRequest,
    Question,
    QuestionnaireAnswer,
    QuestionOption,
    ServiceChoice,
    SignedIn,
    SignedOut,
    SignIn,
    SuitabilityAnswers,
    answer,
)
from server.domain.business import ServiceMethod, label
from server.domain.errors import InvalidInput, NotFound
from server.domain.identity_document import DocumentType
from server.domain.intake import OCCUPATIONS, parse_identity_form
from server.http.access import current_investor, investor_only, public
from server.http.bodies import read_bytes, read_form
from server.http.cookies import INVESTOR_COOKIE, cookie_secure, investor_token
from server.http.json_body import read_model
from server.http.keys import RUNTIME
from server.services import rate_limit
from server.services.intake import holder, identity_check, investor_auth
from server.services.intake import steps as intake
from server.services.intake.images import ImageKind
from server.services.intake.network_check import ClientReport
from server.services.intake.view import application_view, read_application_view

routes = web.RouteTableDef()
PREFIX = "/investor"  # under the sub-app's /api/v1
# Advisory device id (A23 shared_device): the page's random per-browser id, or a broker
# app's; only its keyed hash is kept, a malformed one is ignored.
DEVICE_HEADER = "X-Device-Id"


async def _limit_writes(request: web.Request) -> None:
    """Per-address cap on investor writes; committed on its own so failures count too."""
    rt = request.config_dict[RUNTIME]
    await rate_limit.hit_now(
        rt.db,
        bucket="investor_write",
        key_hash=rt.protector.lookup_hash(request.remote or "", kind="ip"),
        limit=rt.config.intake.writes_per_ip_per_minute,
        window=timedelta(minutes=1),
    )


async def _view(request: web.Request, *, with_csrf: bool = False) -> web.Response:
    rt = request.config_dict[RUNTIME]
    investor = current_investor(request)
    view = await read_application_view(
        rt.db, application_id=investor.application_id, protector=rt.protector
    )
    application = ApplicationView.model_validate(view)
    if with_csrf:
        return answer(ApplicationAnswer(application=application, csrf_token=investor.csrf_token))
    return answer(ApplicationAnswer(application=application))


@routes.get(f"{PREFIX}/options")
@public
async def options(request: web.Request) -> web.Response:
    offer = request.config_dict[RUNTIME].config.services.offer
    return answer(
        Options(
            document_types=[
                Choice(id=DocumentType.RESIDENT_ID.value, zh="居民身份证", en="Resident ID card"),
                Choice(
                    id=DocumentType.HMT_RESIDENCE_PERMIT.value,
                    zh="港澳台居民居住证",
                    en="HK/Macau/Taiwan residence permit",
                ),
            ],
            occupations=[Choice(id=k, zh=zh, en=en) for k, (zh, en) in OCCUPATIONS.items()],
            services=[
                ServiceChoice(
                    id=kind.value,
                    zh=label(kind)[0],
                    en=label(kind)[1],
                    methods=[m.value for m in offer.methods(kind)],
                )
                for kind in offer.offered()
            ],
        )
    )


@routes.post(f"{PREFIX}/otp")
@public
async def request_code(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    body = await read_model(request, OtpRequest)
    issued = await investor_auth.request_otp(
        db=rt.db,
        config=rt.config,
        protector=rt.protector,
        sms=rt.sms,
        phone=body.phone,
        ip=request.remote or "",
    )
    sandbox = {"sandbox_code": issued.sandbox_code} if issued.sandbox_code is not None else {}
    sent = OtpIssued(expires_in=issued.expires_in, resend_after=issued.resend_after, **sandbox)
    return answer(sent, status=202)


@routes.post(f"{PREFIX}/session")
@public
async def sign_in(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    body = await read_model(request, SignIn)
    code = body.code.strip()
    # The code's length is configuration, so it is checked here rather than in the model.
    if not code.isdigit() or len(code) != rt.config.intake.otp_length:
        raise InvalidInput(
            "otp_format",
            f"Enter the {rt.config.intake.otp_length}-digit code from the text message.",
            f"请输入短信中的{rt.config.intake.otp_length}位验证码。",
            details={"field": "code"},
        )
    try:
        method = ServiceMethod(body.method)
    except ValueError:
        raise InvalidInput(
            "method_invalid",
            "method must be 'witnessed' or 'online'.",
            "办理方式须为视频见证（witnessed）或网上办理（online）。",
            details={"field": "method"},
        ) from None
    # A20–A22: a business the agency does not offer by this method is refused before the
    # code is used, so the investor can pick another without a new SMS.
    business = await holder.check_offered(
        db=rt.db,
        protector=rt.protector,
        offer=rt.config.services.offer,
        phone=body.phone,
        business_type=body.business_type,
        method=method,
    )
    login = await investor_auth.verify_otp(
        db=rt.db,
        config=rt.config,
        protector=rt.protector,
        phone=body.phone,
        code=code,
        ip=request.remote or "",
        business_type=business.value,
        method=method.value,
    )
    await rt.risk.saw_phone(login.application_id)  # A23; never raises
    await rt.risk.saw_device(login.application_id, request.headers.get(DEVICE_HEADER))
    async with rt.db.begin() as tx:
        view = await application_view(
            tx=tx, application_id=login.application_id, protector=rt.protector
        )
    signed_in = SignedIn(
        application=ApplicationView.model_validate(view),
        csrf_token=login.csrf_token,
        resumed=login.resumed,
        expires_in=login.expires_in,
        **({"token": login.token} if body.want_token else {}),
    )
    response = answer(signed_in, status=201)
    response.set_cookie(
        INVESTOR_COOKIE,
        login.token,
        httponly=True,
        secure=cookie_secure(request),
        samesite="Strict",
        path="/",
        max_age=login.expires_in,
    )
    return response


@routes.delete(f"{PREFIX}/session")
@investor_only
async def sign_out(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    token, _ = investor_token(request)
    async with rt.db.begin() as tx:
        await investor_auth.end_investor_session(tx=tx, token=token)
    response = answer(SignedOut(signed_out=True))
    response.del_cookie(INVESTOR_COOKIE, path="/")
    return response


@routes.get(f"{PREFIX}/application")
@investor_only
async def get_application(request: web.Request) -> web.Response:
    return await _view(request, with_csrf=True)


@routes.put(f"{PREFIX}/application/identity")
@investor_only
async def put_identity(request: web.Request) -> web.Response:
    await _limit_writes(request)
    rt = request.config_dict[RUNTIME]
    body = await read_model(request, IdentityForm)
    data = parse_identity_form(
        body.model_dump(mode="json"),
        today=intake.today_in(rt.config.zone),
        min_age=rt.config.intake.min_age,
    )
    application_id = current_investor(request).application_id
    async with rt.db.begin() as tx:
        business_type = (await intake.load_draft(tx, application_id)).business_type
    if business_type != "open":
        # A21: a holder's identity counts only with an account of theirs behind it.
        await holder.save_holder_identity(
            db=rt.db,
            accounts=rt.accounts,
            protector=rt.protector,
            application_id=application_id,
            data=data,
            account_number=body.account_number or "",
            named=body.accounts or (),
            details=body.details,
        )
        return await _view(request)
    async with rt.db.begin() as tx:
        await intake.save_identity(
            tx=tx,
            application_id=application_id,
            data=data,
            protector=rt.protector,
        )
    return await _view(request)


def _image_kind(request: web.Request) -> ImageKind:
    try:
        return ImageKind(request.match_info["kind"])
    except ValueError:
        raise NotFound(
            "document_kind_unknown",
            "Unknown document kind; use id_front, id_back or frontal_photo.",
            "未知的材料类型。",
        ) from None


@routes.put(PREFIX + "/application/documents/{kind}")
@investor_only
async def put_document(request: web.Request) -> web.Response:
    await _limit_writes(request)
    rt = request.config_dict[RUNTIME]
    kind = _image_kind(request)
    if request.content_type == "multipart/form-data":
        form = await read_form(request)
        field = form.get("file")
        if not isinstance(field, web.FileField):
            raise InvalidInput(
                "file_missing", "Attach the image as the 'file' field.", "请选择要上传的图片。"
            )
        raw = field.file.read()
    else:
        raw = await read_bytes(request)
    await intake.save_image(
        db=rt.db,
        application_id=current_investor(request).application_id,
        kind=kind,
        raw=raw,
        limits=rt.image_limits,
        root=rt.config.recordings_path,
        slots=rt.image_slots,
    )
    return await _view(request)


@routes.get(PREFIX + "/application/documents/{kind}")
@investor_only
async def get_document(request: web.Request) -> web.StreamResponse:
    rt = request.config_dict[RUNTIME]
    kind = _image_kind(request)
    async with rt.db.begin() as tx:
        docs = await intake.active_documents(tx, current_investor(request).application_id)
    doc = next((d for d in docs if d.kind == kind.value), None)
    if doc is None:
        raise NotFound("document_not_found", "Not uploaded yet.", "尚未上传。")
    path = rt.config.recordings_path / doc.path
    return web.FileResponse(
        path, headers={"Content-Type": doc.content_type, "Cache-Control": "private, no-store"}
    )


@routes.get(PREFIX + "/application/account")
@investor_only
async def get_account(request: web.Request) -> web.Response:
    """The investor's account numbers once opened (A9)."""
    rt = request.config_dict[RUNTIME]
    account = await rt.aftercare.account_of(current_investor(request).application_id)
    if account is None:
        raise NotFound("no_account", "No account has been opened yet.", "尚未开立账户。")
    return answer(
        AccountAnswer(
            unified_account_number=account.unified_account_number,
            sub_accounts=account.sub_accounts,
            status=account.status,
            opening_method=account.opening_method,
        )
    )


@routes.get(PREFIX + "/application/confirmation.pdf")
@investor_only
async def get_confirmation(request: web.Request) -> web.Response:
    """The account-opening confirmation (A9), a PDF with its Chinese font embedded."""
    rt = request.config_dict[RUNTIME]
    pdf = await rt.notices.confirmation_pdf(current_investor(request).application_id)
    return web.Response(
        body=pdf,
        content_type="application/pdf",
        headers={
            "Content-Disposition": 'attachment; filename="account-confirmation.pdf"',
            "Cache-Control": "private, no-store",
        },
    )


@routes.get(f"{PREFIX}/questionnaire")
@public
async def get_questionnaire(request: web.Request) -> web.Response:
    q = request.config_dict[RUNTIME].questionnaire
    return answer(
        QuestionnaireAnswer(
            version=q.version,
            questions=[
                Question(
                    id=item.id,
                    zh=item.text_zh,
                    en=item.text_en,
                    multiple=item.multiple,
                    options=[
                        QuestionOption(id=o.id, zh=o.text_zh, en=o.text_en) for o in item.options
                    ],
                )
                for item in q.questions
            ],
        )
    )


@routes.put(f"{PREFIX}/application/suitability")
@investor_only
async def put_suitability(request: web.Request) -> web.Response:
    await _limit_writes(request)
    rt = request.config_dict[RUNTIME]
    body = await read_model(request, SuitabilityAnswers)
    async with rt.db.begin() as tx:
        await intake.save_suitability(
            tx=tx,
            application_id=current_investor(request).application_id,
            questionnaire=rt.questionnaire,
            answers=body.answers,
        )
    return await _view(request)


@routes.get(f"{PREFIX}/disclosure")
@investor_only
async def get_disclosure(request: web.Request) -> web.Response:
    rt = request.config_dict[RUNTIME]
    doc = rt.disclosure
    async with rt.db.begin() as tx:
        await intake.serve_disclosure(
            tx=tx, application_id=current_investor(request).application_id, document=doc
        )
    return answer(
        Disclosure(
            version=doc.version,
            title_zh=doc.title_zh,
            title_en=doc.title_en,
            body_zh=doc.body_zh,
            body_en=doc.body_en,
            min_read_seconds=doc.min_read_seconds,
        )
    )


@routes.post(f"{PREFIX}/application/disclosure")
@investor_only
async def acknowledge(request: web.Request) -> web.Response:
    await _limit_writes(request)
    rt = request.config_dict[RUNTIME]
    body = await read_model(request, DisclosureAck)
    async with rt.db.begin() as tx:
        await intake.acknowledge_disclosure(
            tx=tx,
            application_id=current_investor(request).application_id,
            document=rt.disclosure,
            version=body.version,
            scrolled_to_end=body.scrolled_to_end,
        )
    return await _view(request)


@routes.post(f"{PREFIX}/application/submit")
@investor_only
async def submit(request: web.Request) -> web.Response:
    await _limit_writes(request)
    rt = request.config_dict[RUNTIME]
    application_id = current_investor(request).application_id
    await rt.risk.saw_ip(application_id, request.remote or "")  # A23; never raises
    await rt.risk.saw_device(application_id, request.headers.get(DEVICE_HEADER))
    try:
        await identity_check.submit_and_check(
            db=rt.db,
            config=rt.config,
            protector=rt.protector,
            registry=rt.registry,
            application_id=application_id,
            screen=rt.screener.after_identity,
        )
    finally:
        await rt.risk.after_identity_check(application_id)  # A23; never raises
    return await _view(request)


@routes.post(f"{PREFIX}/application/online-confirmation")
@investor_only
async def confirm_online(request: web.Request) -> web.Response:
    """A22: confirm an online service (accounts opened online; no video call)."""
    await _limit_writes(request)
    rt = request.config_dict[RUNTIME]
    body = await read_model(request, OnlineConfirmation)
    if not body.confirm:
        raise InvalidInput(
            "confirmation_required",
            "Tick the box to confirm the service.",
            "请勾选确认办理该业务。",
            details={"field": "confirm"},
        )
    application_id = current_investor(request).application_id
    await holder.confirm_online(db=rt.db, application_id=application_id)
    await rt.aftercare.after_approval(application_id, actor="investor")
    return await _view(request)


@routes.post(f"{PREFIX}/application/correct")
@investor_only
async def correct(request: web.Request) -> web.Response:
    await _limit_writes(request)
    rt = request.config_dict[RUNTIME]
    async with rt.db.begin() as tx:
        await identity_check.correct_data(
            tx=tx, application_id=current_investor(request).application_id
        )
    return await _view(request)


# ── the pre-call check (issue 16) ─────────────────────────────────────────────────────


@routes.get(f"{PREFIX}/application/network-check")
@investor_only
async def get_network_check(request: web.Request) -> web.Response:
    """The latest check, whether one is required, and the ICE servers for the test."""
    rt = request.config_dict[RUNTIME]
    info = await rt.network_checks.info(current_investor(request).application_id)
    return answer(NetworkCheckInfo.model_validate(info))


@routes.post(f"{PREFIX}/application/network-check/probe")
@investor_only
async def start_network_probe(request: web.Request) -> web.Response:
    """Answer the browser's offer with a short test connection on this node."""
    rt = request.config_dict[RUNTIME]
    body = await read_model(request, NetworkProbeOffer)
    started = await rt.network_checks.start_probe(
        current_investor(request).application_id, body.sdp
    )
    return answer(NetworkProbeAnswer.model_validate(started), status=201)


@routes.post(f"{PREFIX}/application/network-check")
@investor_only
async def record_network_check(request: web.Request) -> web.Response:
    """Store the check: the server's sealed figures plus what only the browser knows."""
    await _limit_writes(request)
    rt = request.config_dict[RUNTIME]
    body = await read_model(request, NetworkCheckReport)
    check = await rt.network_checks.record(
        current_investor(request).application_id,
        token=body.token,
        client=ClientReport(
            camera_ok=body.camera_ok,
            microphone_ok=body.microphone_ok,
            **body.client.model_dump(),
        ),
    )
    return answer(NetworkCheckAnswer.model_validate({"check": check}), status=201)
