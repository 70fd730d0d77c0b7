"""What the pages call each field, so that a refusal names the field as the person saw it.

Keys are the JSON fields of the APIs; values are (Chinese, English) as the form labels
them (server/web/templates/investor.html, the staff pages). A field not listed falls
back to its key.
"""

from __future__ import annotations

from datetime import date

FIELD_LABELS: dict[str, tuple[str, str]] = {
    # Sign-in
    "phone": ("手机号码", "Mobile number"),
    "code": ("短信验证码", "SMS code"),
    # Identity (investor.html, step "identity")
    "document_type": ("证件类型", "Document type"),
    "name": ("姓名", "Full name"),
    "id_number": ("证件号码", "Document number"),
    "sex": ("性别", "Sex"),
    "birth_date": ("出生日期", "Date of birth"),
    "valid_from": ("有效期起始", "Valid from"),
    "valid_until": ("有效期截止", "Valid until"),
    "valid_until_long_term": ("长期有效", "Long-term (no end date)"),
    "nationality": ("国籍/地区", "Nationality / region"),
    "address": ("联系地址", "Address"),
    "occupation": ("职业", "Occupation"),
    "email": ("电子邮箱", "Email"),
    # A holder's service (A20–A22): the phone step's choice and the identity step's extras
    "business": ("办理业务", "What would you like to do?"),
    "method": ("办理方式", "How"),
    "account_number": (
        "一码通账户号码或证券账户号码",
        "Unified account number or a securities account number",
    ),
    "accounts": ("办理的账户", "Accounts"),
    "details": ("要变更的信息", "What to change"),
    "details.phone": ("新手机号码", "New mobile number"),
    "details.address": ("新联系地址", "New address"),
    "details.email": ("新电子邮箱", "New email"),
    "details.occupation": ("新职业", "New occupation"),
    "details.to_agency": ("转入机构", "Agency to transfer to"),
    "details.action": ("北交所权限标识", "Beijing-market mark"),
    "confirm": ("确认办理", "Confirm"),
    # Questionnaire and disclosure
    "answers": ("问卷答案", "Questionnaire answers"),
    "version": ("风险揭示书版本", "Disclosure version"),
    "scrolled_to_end": ("阅读至末尾", "Read to the end"),
    # Staff forms
    "username": ("用户名", "Username"),
    "password": ("密码", "Password"),
    "display_name": ("姓名", "Display name"),
    "reason": ("原因说明", "Reason"),
    "note": ("说明", "Note"),
}


def label_zh(field: str) -> str:
    return FIELD_LABELS.get(field, (field, field))[0]


def label_en(field: str) -> str:
    return FIELD_LABELS.get(field, (field, field))[1]


# How stored values read on staff pages (issue 17: the review page showed raw keys,
# ISO dates, None for a long-term ID and empty rows).
_DOCUMENT_TYPES = {
    "resident_id": ("居民身份证", "Resident ID card"),
    "hmt_residence_permit": ("港澳台居民居住证", "HK/Macao/Taiwan residence permit"),
}
_SEXES = {"M": ("男", "Male"), "F": ("女", "Female")}
_REGIONS = {
    "CHN": ("中国", "China"),
    "HKG": ("中国香港", "Hong Kong, China"),
    "MAC": ("中国澳门", "Macao, China"),
    "TWN": ("中国台湾", "Taiwan, China"),
}
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
# The order the identity form asks them in; name, number and type are shown above.
APPLICATION_FIELDS = (
    "sex",
    "birth_date",
    "valid_from",
    "valid_until",
    "nationality",
    "address",
    "occupation",
    "email",
)


def _date_text(value: str) -> tuple[str, str]:
    try:
        d = date.fromisoformat(value)
    except ValueError:
        return value, value
    return f"{d.year}年{d.month}月{d.day}日", f"{d.day} {_MONTHS[d.month - 1]} {d.year}"


def value_text(field: str, value: object) -> tuple[str, str] | None:
    """(Chinese, English) for a stored value; None when there is nothing to show."""
    from server.domain.intake import OCCUPATIONS  # intake imports this module

    if field == "valid_until" and value is None:
        return "长期", "long-term"
    if value is None or value == "":
        return None
    text = str(value)
    if field in ("birth_date", "valid_from", "valid_until"):
        return _date_text(text)
    table = {
        "document_type": _DOCUMENT_TYPES,
        "sex": _SEXES,
        "nationality": _REGIONS,
        "occupation": OCCUPATIONS,
    }.get(field)
    if table and text in table:
        return table[text]
    return text, text


def application_rows(form: dict[str, object]) -> list[dict[str, str]]:
    """The application data as labelled rows: label and value in both languages, dates
    written out, "long-term" for an ID without an end date, empty fields left out."""
    rows = []
    for field in APPLICATION_FIELDS:
        if field not in form:
            continue
        shown = value_text(field, form[field])
        if shown is None:
            continue
        rows.append(
            {
                "field": field,
                "label_zh": label_zh(field),
                "label_en": label_en(field),
                "value_zh": shown[0],
                "value_en": shown[1],
            }
        )
    return rows
