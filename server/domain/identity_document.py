"""Identity document rules for online account opening (CSDC rule A6).

Pure functions only: no I/O and no clock. Callers pass ``today`` so that the
rules are deterministic and testable, and so that one request uses one date.

Error messages never echo the ID number or the name: both are personal data
and error bodies end up in logs and browser consoles.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Literal

from server.domain.errors import InvalidInput

__all__ = [
    "DocumentType",
    "IdNumberInfo",
    "age_on",
    "check_character",
    "normalize_id_number",
    "parse_document_type",
    "validate_id_number",
    "validate_identity",
    "validate_name",
]


class DocumentType(StrEnum):
    # A6: online opening accepts only these two; anything else (passport,
    # military ID, ...) must go to a branch counter.
    RESIDENT_ID = "resident_id"  # 居民身份证
    HMT_RESIDENCE_PERMIT = "hmt_residence_permit"  # 港澳台居民居住证


_DOC_TYPE_ZH = {
    DocumentType.RESIDENT_ID: "居民身份证",
    DocumentType.HMT_RESIDENCE_PERMIT: "港澳台居民居住证",
}


def _invalid(code: str, message: str, message_zh: str, field: str) -> InvalidInput:
    return InvalidInput(code, message, message_zh, details={"field": field})


def parse_document_type(value: str) -> DocumentType:
    """Map a client-supplied type string to an accepted document type."""
    try:
        return DocumentType(value.strip().lower())
    except ValueError:
        # A6: refuse rather than default, so an unsupported document never
        # reaches the witnessing step.
        raise _invalid(
            "document_type_not_accepted",
            "Only the mainland resident ID card or the Hong Kong/Macau/Taiwan "
            "residence permit can be used to open an account online.",
            "网上开户仅支持居民身份证或港澳台居民居住证。",
            "doc_type",
        ) from None


# GB 11643-1999, ISO 7064 MOD 11-2: weight i is 2**(17-i) mod 11.
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = "10X98765432"

# Explicit ASCII classes: ``\d`` / ``str.isdigit`` also match Arabic-Indic and
# other Unicode digits, which ``int()`` would silently accept.
_FIRST17_RE = re.compile(r"[0-9]{17}")
_ID_RE = re.compile(r"[0-9]{17}[0-9X]")


def _format_error() -> InvalidInput:
    return _invalid(
        "id_number_format",
        "The ID number must be 17 digits followed by a digit or X.",
        "证件号码格式错误，应为17位数字加1位数字或X。",
        "id_number",
    )


def check_character(first17: str) -> str:
    """Return the GB 11643-1999 check character for the first 17 digits."""
    if _FIRST17_RE.fullmatch(first17) is None:
        raise _format_error()
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


# Full-width forms come from Chinese IMEs; mapping them avoids rejecting a
# correctly typed number. Only digits and X are mapped: other full-width
# characters must still fail the format check.
_FULLWIDTH = str.maketrans(
    {**{chr(0xFF10 + i): str(i) for i in range(10)}, "\uff38": "X", "\uff58": "x"}
)
_ID_SPACES_RE = re.compile(r"[ \u3000]+")


def normalize_id_number(raw: str) -> str:
    """Canonical form of a typed ID number; does not validate it."""
    # Strip only spaces (ASCII and ideographic): people group digits with
    # them, while tabs or newlines indicate garbage and should fail format.
    text = _ID_SPACES_RE.sub("", raw.translate(_FULLWIDTH))
    # Only the final position may legally be X; an inner 'x' stays lower-case
    # so that it is reported as a format error rather than silently "fixed".
    if text.endswith("x"):
        text = text[:-1] + "X"
    return text


@dataclass(frozen=True)
class IdNumberInfo:
    number: str  # normalized, 18 characters
    region_code: str  # 6-digit administrative division code
    birth_date: date
    sex: Literal["M", "F"]


# GB/T 2260 province-level prefixes issued on resident ID cards.  71 (Taiwan)
# exists in GB/T 2260 but no resident ID card carries it, and 81/82/83 are
# reserved for residence permits.
_RESIDENT_PROVINCES = frozenset(
    f"{n:02d}"
    for lo, hi in ((11, 15), (21, 23), (31, 37), (41, 46), (50, 54), (61, 65))
    for n in range(lo, hi + 1)
)
# Residence permits use a fixed 6-digit prefix per origin instead of the
# holder's address: 810000 Hong Kong, 820000 Macau, 830000 Taiwan.
_PERMIT_PREFIXES = frozenset({"810000", "820000", "830000"})
_EARLIEST_BIRTH = date(1900, 1, 1)


def _check_region(number: str, doc_type: DocumentType) -> None:
    if doc_type is DocumentType.RESIDENT_ID:
        ok = number[:2] in _RESIDENT_PROVINCES
    else:
        ok = number[:6] in _PERMIT_PREFIXES
    if not ok:
        raise _invalid(
            "id_number_region",
            "The region code of the ID number does not match the document type.",
            f"证件号码的地区码与{_DOC_TYPE_ZH[doc_type]}不符。",
            "id_number",
        )


def _birth_date_of(number: str, today: date) -> date:
    error = _invalid(
        "id_number_birth_date",
        "The ID number does not contain a valid date of birth.",
        "证件号码中的出生日期无效。",
        "id_number",
    )
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise error from None
    # A future date cannot be a birth date; pre-1900 numbers were never issued
    # and usually mean a mistyped year.
    if born < _EARLIEST_BIRTH or born > today:
        raise error
    return born


def validate_id_number(raw: str, doc_type: DocumentType, *, today: date) -> IdNumberInfo:
    """Validate an ID number for ``doc_type`` and decode what it encodes.

    Checks run format, region, birth date, then check character, so a
    structurally wrong number is reported as such rather than as a typo.
    """
    number = normalize_id_number(raw)
    if _ID_RE.fullmatch(number) is None:
        raise _format_error()
    _check_region(number, doc_type)
    born = _birth_date_of(number, today)
    if check_character(number[:17]) != number[17]:
        raise _invalid(
            "id_number_check_digit",
            "The check digit of the ID number is wrong; please re-check the number.",
            "身份证号码校验位错误，请核对号码。",
            "id_number",
        )
    # GB 11643-1999: the 17th digit is the sequence code; odd = male.
    sex: Literal["M", "F"] = "M" if int(number[16]) % 2 == 1 else "F"
    return IdNumberInfo(number=number, region_code=number[:6], birth_date=born, sex=sex)


def age_on(birth: date, today: date) -> int:
    """Completed years (周岁) of someone born on ``birth`` as of ``today``.

    A 29 February birthday is reached on 1 March in common years: comparing
    (month, day) tuples gives that, and it is the conservative choice for an
    adults-only check because it never makes anyone older early.
    """
    if today < birth:
        # Programming error: callers validate birth dates first.
        raise ValueError("today is before the birth date")
    before_birthday = (today.month, today.day) < (birth.month, birth.day)
    return today.year - birth.year - int(before_birthday)


def _validity_error(message: str, message_zh: str, field: str) -> InvalidInput:
    return _invalid("document_validity_invalid", message, message_zh, field)


def _check_validity(
    doc_type: DocumentType,
    birth: date,
    valid_from: date,
    valid_until: date | None,
    today: date,
) -> None:
    if valid_until is None and doc_type is not DocumentType.RESIDENT_ID:
        # Long-term (长期) validity exists only on resident ID cards issued to
        # people aged 46+; residence permits are always valid for 5 years.
        raise _validity_error(
            "Only a resident ID card can have long-term validity.",
            "仅居民身份证可为长期有效，港澳台居民居住证须填写有效期截止日。",
            "valid_until",
        )
    if valid_from > today or valid_from < birth:
        raise _validity_error(
            "The document's start of validity is not plausible.",
            "证件有效期起始日期不正确。",
            "valid_from",
        )
    if valid_until is not None and valid_until < valid_from:
        raise _validity_error(
            "The document's end of validity is before its start.",
            "证件有效期截止日期早于起始日期。",
            "valid_until",
        )
    # A6: the document must be valid on the day of opening; the last day of
    # validity still counts as valid.
    if valid_until is not None and valid_until < today:
        raise _invalid(
            "document_expired",
            "The identity document has expired.",
            "证件已过有效期。",
            "valid_until",
        )


def validate_identity(
    *,
    doc_type: DocumentType,
    id_number: str,
    birth_date: date,
    sex: str,
    valid_from: date,
    valid_until: date | None,
    today: date,
    min_age: int = 18,
) -> IdNumberInfo:
    """Apply every A6 document check to what the investor entered.

    ``valid_until=None`` means long-term validity (长期).
    """
    info = validate_id_number(id_number, doc_type, today=today)
    # The entered fields must agree with the number: a mismatch usually means
    # a typo, but could mean someone else's document.
    if birth_date != info.birth_date:
        raise _invalid(
            "birth_date_mismatch",
            "The date of birth does not match the ID number.",
            "出生日期与证件号码不一致。",
            "birth_date",
        )
    if sex != info.sex:
        raise _invalid(
            "sex_mismatch",
            "The sex does not match the ID number.",
            "性别与证件号码不一致。",
            "sex",
        )
    _check_validity(doc_type, info.birth_date, valid_from, valid_until, today)
    # A6: only adult natural persons may open an account online.
    if age_on(info.birth_date, today) < min_age:
        raise _invalid(
            "underage",
            f"Online account opening requires an age of at least {min_age}.",
            f"网上开户须年满{min_age}周岁。",
            "birth_date",
        )
    return info


_NAME_MAX_LEN = 60
_NAME_SEPARATORS = frozenset("·- ")
_WHITESPACE_RE = re.compile(r"\s+")


def _is_name_letter(ch: str) -> bool:
    if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf":
        return True  # CJK Unified Ideographs and Extension A
    if "\uf900" <= ch <= "\ufaff" or "\U00020000" <= ch <= "\U0003134f":
        return True  # compatibility ideographs and Extensions B..G (rare names)
    # Latin letters including accented ones (José, Müller); other scripts are
    # not expected on the two accepted documents.
    return unicodedata.category(ch).startswith("L") and unicodedata.name(ch, "").startswith(
        "LATIN "
    )


def validate_name(raw: str) -> str:
    """Return the canonical form of a holder's name, or raise ``name_invalid``."""
    error = _invalid(
        "name_invalid",
        "The name may contain only Chinese characters, Latin letters, '·', "
        "spaces and hyphens, up to 60 characters.",
        "姓名只能包含汉字、拉丁字母、间隔号“·”、空格和连字符，且不超过60个字符。",
        "name",
    )
    text = raw.strip()
    # Control and format characters (tabs, newlines, zero-width and bidi
    # overrides) are rejected, not collapsed: they have no place in a name and
    # are used for log and display spoofing.
    if any(unicodedata.category(ch).startswith("C") for ch in text):
        raise error
    name = _WHITESPACE_RE.sub(" ", text)
    if not 1 <= len(name) <= _NAME_MAX_LEN:
        raise error
    # An allowlist also rejects markup (<>"'&;{}\) and digits, because none of
    # those is a letter or an allowed separator.
    if not all(_is_name_letter(ch) or ch in _NAME_SEPARATORS for ch in name):
        raise error
    # A separator must sit between name parts (阿沛·阿旺晋美), never at an end.
    if name[0] in _NAME_SEPARATORS or name[-1] in _NAME_SEPARATORS:
        raise error
    return name
