"""Investor intake: phone numbers, the identity form (A6) and which step comes next. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from server.domain.application import ApplicationState
from server.domain.errors import InvalidInput
from server.domain.field_labels import label_en, label_zh
from server.domain.identity_document import (
    DocumentType,
    IdNumberInfo,
    normalize_id_number,
    parse_document_type,
    validate_identity,
    validate_name,
)

_PHONE_RE = re.compile(r"^1[3-9]\d{9}$")
_EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,24}$")
_FORBIDDEN_TEXT = re.compile(r"[<>\x00-\x1f\x7f]")

# GB/T 2659 codes: a resident ID belongs to a PRC national; a permit's prefix fixes the region.
_PERMIT_REGION = {"810000": "HKG", "820000": "MAC", "830000": "TWN"}

OCCUPATIONS: dict[str, tuple[str, str]] = {
    "civil_servant": ("党政机关、事业单位工作人员", "Civil servant / public institution"),
    "enterprise_staff": ("企业职员", "Company employee"),
    "finance_staff": ("金融从业人员", "Financial industry employee"),
    "professional": ("专业技术人员", "Professional (doctor, lawyer, teacher …)"),
    "self_employed": ("个体工商户、私营业主", "Self-employed / business owner"),
    "farmer": ("农林牧渔人员", "Agriculture"),
    "military": ("军人", "Military"),
    "student": ("学生", "Student"),
    "retired": ("离退休人员", "Retired"),
    "unemployed": ("无业", "Not employed"),
    "other": ("其他", "Other"),
}


def _invalid(code: str, en: str, zh: str, field: str) -> InvalidInput:
    return InvalidInput(code, en, zh, details={"field": field})


def validate_phone(raw: object) -> str:
    """A mainland mobile number (the SMS code goes there), accepting +86 and separators."""
    text = re.sub(r"[\s-]", "", str(raw or ""))
    if text.startswith("+86"):
        text = text[3:]
    elif text.startswith("0086"):
        text = text[4:]
    if not _PHONE_RE.match(text):
        raise _invalid(
            "phone_invalid",
            "Enter an 11-digit mainland mobile number.",
            "请输入11位中国大陆手机号码。",
            "phone",
        )
    return text


@dataclass(frozen=True)
class IdentityData:
    """What the investor states about themselves (A6, A17.1)."""

    name: str
    document_type: DocumentType
    id_number: str
    sex: str
    birth_date: date
    valid_from: date
    valid_until: date | None  # None: long-term (长期)
    nationality: str
    address: str
    occupation: str
    email: str

    def profile(self) -> dict[str, Any]:
        """Everything but name, type and number, JSON-ready (stored encrypted)."""
        data = asdict(self)
        for key in ("name", "document_type", "id_number"):
            data.pop(key)
        for key in ("birth_date", "valid_from", "valid_until"):
            value = data[key]
            data[key] = value.isoformat() if value else None
        return data


def _text(data: Mapping[str, Any], field: str) -> str:
    value = data.get(field)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _invalid(
            "field_type",
            f"“{label_en(field)}” must be text.",
            f"“{label_zh(field)}”须为文本。",
            field,
        )
    return value.strip()


def _date(data: Mapping[str, Any], field: str, *, required: bool = True) -> date | None:
    text = _text(data, field)
    if not text:
        if required:
            raise _invalid(
                "field_required",
                f"Please fill in “{label_en(field)}”.",
                f"请填写“{label_zh(field)}”。",
                field,
            )
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _invalid(
            "date_invalid",
            f"“{label_en(field)}” must be a date like 2030-12-31.",
            f"“{label_zh(field)}”须为日期，格式如 2030-12-31。",
            field,
        ) from None


def parse_identity_form(data: Mapping[str, Any], *, today: date, min_age: int) -> IdentityData:
    doc_type = parse_document_type(_text(data, "document_type"))
    name = validate_name(_text(data, "name"))
    number = normalize_id_number(_text(data, "id_number"))
    birth = _date(data, "birth_date")
    valid_from = _date(data, "valid_from")
    long_term = data.get("valid_until_long_term") is True
    valid_until = None if long_term else _date(data, "valid_until")
    assert birth is not None and valid_from is not None  # required=True above
    sex = _text(data, "sex").upper()
    info: IdNumberInfo = validate_identity(
        doc_type=doc_type,
        id_number=number,
        birth_date=birth,
        sex=sex,
        valid_from=valid_from,
        valid_until=valid_until,
        today=today,
        min_age=min_age,
    )
    nationality = _text(data, "nationality").upper() or _default_nationality(doc_type, info)
    expected = _default_nationality(doc_type, info)
    if nationality != expected:
        raise _invalid(
            "nationality_mismatch",
            "Nationality/region does not match the document.",
            "国籍/地区与证件不一致。",
            "nationality",
        )
    address = _text(data, "address")
    if not 5 <= len(address) <= 200 or _FORBIDDEN_TEXT.search(address):
        raise _invalid(
            "address_invalid",
            "Enter your full address (5–200 characters, no '<' or '>').",
            "请填写完整地址（5–200个字符，不含“<”“>”）。",
            "address",
        )
    occupation = _text(data, "occupation")
    if occupation not in OCCUPATIONS:
        raise _invalid(
            "occupation_invalid",
            "Choose an occupation from the list.",
            "请选择职业。",
            "occupation",
        )
    email = _text(data, "email")
    if email and not _EMAIL_RE.match(email):
        raise _invalid(
            "email_invalid", "The email address is not valid.", "电子邮箱格式不正确。", "email"
        )
    return IdentityData(
        name=name,
        document_type=doc_type,
        id_number=info.number,
        sex=info.sex,
        birth_date=info.birth_date,
        valid_from=valid_from,
        valid_until=valid_until,
        nationality=nationality,
        address=address,
        occupation=occupation,
        email=email,
    )


def _default_nationality(doc_type: DocumentType, info: IdNumberInfo) -> str:
    if doc_type is DocumentType.RESIDENT_ID:
        return "CHN"
    return _PERMIT_REGION.get(info.number[:6], "")


class IntakeStep(StrEnum):
    IDENTITY = "identity"
    ID_IMAGES = "id_images"
    FRONTAL_PHOTO = "frontal_photo"
    SUITABILITY = "suitability"
    DISCLOSURE = "disclosure"
    CHECK = "check"
    READY = "ready"  # identity verified: may join the witness queue
    IDENTITY_FAILED = "identity_failed"
    BEYOND = "beyond"  # queued or later: intake is over


STEP_ORDER = (
    IntakeStep.IDENTITY,
    IntakeStep.ID_IMAGES,
    IntakeStep.FRONTAL_PHOTO,
    IntakeStep.SUITABILITY,
    IntakeStep.DISCLOSURE,
    IntakeStep.CHECK,
)
# A21: a holder's service verifies the identity (and that the accounts are theirs) with
# the same checks as an opening; the questionnaire and the opening's risk disclosure are
# for new investors (A4), so they are not asked again.
SERVICE_STEP_ORDER = (
    IntakeStep.IDENTITY,
    IntakeStep.ID_IMAGES,
    IntakeStep.FRONTAL_PHOTO,
    IntakeStep.CHECK,
)


def step_order(business_type: str) -> tuple[IntakeStep, ...]:
    return STEP_ORDER if business_type == "open" else SERVICE_STEP_ORDER


@dataclass(frozen=True)
class IntakeProgress:
    state: ApplicationState
    identity: bool
    id_front: bool
    id_back: bool
    frontal_photo: bool
    suitability: bool
    disclosure: bool
    business_type: str = "open"


def completed_steps(p: IntakeProgress) -> frozenset[IntakeStep]:
    done = set()
    if p.identity:
        done.add(IntakeStep.IDENTITY)
    if p.id_front and p.id_back:
        done.add(IntakeStep.ID_IMAGES)
    if p.frontal_photo:
        done.add(IntakeStep.FRONTAL_PHOTO)
    if p.suitability:
        done.add(IntakeStep.SUITABILITY)
    if p.disclosure:
        done.add(IntakeStep.DISCLOSURE)
    return frozenset(done)


def next_step(p: IntakeProgress) -> IntakeStep:
    """Where a returning investor resumes."""
    if p.state is ApplicationState.IDENTITY_VERIFIED:
        return IntakeStep.READY
    if p.state is ApplicationState.IDENTITY_FAILED:
        return IntakeStep.IDENTITY_FAILED
    if p.state is not ApplicationState.DRAFT and p.state is not ApplicationState.SUBMITTED:
        return IntakeStep.BEYOND
    done = completed_steps(p)
    for step in step_order(p.business_type):
        if step not in done:
            return step
    return IntakeStep.CHECK


def missing_before_check(p: IntakeProgress) -> list[str]:
    """A17.1, A4: every earlier step must be complete before the registry check."""
    done = completed_steps(p)
    return [s.value for s in step_order(p.business_type)[:-1] if s not in done]
