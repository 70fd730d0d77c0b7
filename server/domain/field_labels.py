"""What the pages call each field, so that a refusal names the field as the person saw it.

Keys are the JSON fields of the APIs; values are (Chinese, English) as the form labels
them (server/web/templates/investor.html, the staff pages). A field not listed falls
back to its key.
"""

from __future__ import annotations

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
