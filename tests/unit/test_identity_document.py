"""Unit tests for server.domain.identity_document (CSDC rule A6).

ID numbers below are literals, not built with ``check_character``, so a
broken checksum implementation cannot make its own test data pass. The two
GB 11643-1999 examples anchor the checksum independently.
"""

from __future__ import annotations

from datetime import date

import pytest

from server.domain.errors import ErrorKind, InvalidInput
from server.domain.identity_document import (
    DocumentType,
    IdNumberInfo,
    age_on,
    check_character,
    normalize_id_number,
    parse_document_type,
    validate_id_number,
    validate_identity,
    validate_name,
)

TODAY = date(2025, 6, 15)
RID = DocumentType.RESIDENT_ID
HMT = DocumentType.HMT_RESIDENCE_PERMIT

STANDARD_FEMALE = "11010519491231002X"  # GB 11643-1999 example
MALE = "110105199003071239"  # 1990-03-07, sequence 123 (odd: male)
PERMIT_HK = "810000199408230013"  # 1994-08-23, male
PERMIT_MO = "820000198001010024"  # 1980-01-01, female
PERMIT_TW = "830000200002290031"  # 2000-02-29, male
BORN_TODAY = "110105202506150013"  # 2025-06-15, male


# --- document type -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("resident_id", RID),
        ("hmt_residence_permit", HMT),
        (" RESIDENT_ID ", RID),
    ],
)
def test_parse_document_type_accepts_the_two_a6_types(value: str, expected: DocumentType) -> None:
    assert parse_document_type(value) is expected


@pytest.mark.parametrize(
    "value", ["passport", "", "military_id", "resident", "hk_macau_pass", "居民身份证"]
)
def test_parse_document_type_refuses_other_types(value: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_document_type(value)
    assert exc.value.code == "document_type_not_accepted"
    assert exc.value.kind is ErrorKind.INVALID
    assert exc.value.details == {"field": "doc_type"}
    assert "港澳台居民居住证" in exc.value.message_zh


def test_document_type_values_are_stable() -> None:
    assert [t.value for t in DocumentType] == ["resident_id", "hmt_residence_permit"]


# --- check character -----------------------------------------------------


@pytest.mark.parametrize(
    ("first17", "expected"),
    [
        ("11010519491231002", "X"),  # GB 11643-1999 example 1 (remainder 2)
        ("44052418800101001", "4"),  # GB 11643-1999 example 2
        ("11010519900307123", "9"),
        ("81000019940823001", "3"),
        ("11010519900307124", "7"),
        ("00000000000000000", "1"),  # remainder 0 maps to "1"
    ],
)
def test_check_character(first17: str, expected: str) -> None:
    assert check_character(first17) == expected


@pytest.mark.parametrize(
    "first17",
    [
        "1101051949123100",
        "110105194912310021",
        "1101051949123100X",
        "１１０１０５１９４９１２３１００２",
    ],
)
def test_check_character_rejects_non_17_ascii_digits(first17: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        check_character(first17)
    assert exc.value.code == "id_number_format"


# --- normalisation -------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("11010519491231002x", STANDARD_FEMALE),
        (" 110105 19491231 002X ", STANDARD_FEMALE),
        ("１１０１０５１９４９１２３１００２Ｘ", STANDARD_FEMALE),
        ("１１０１０５１９４９１２３１００２ｘ", STANDARD_FEMALE),
        ("110105\u300019491231002X", STANDARD_FEMALE),  # ideographic space
        ("1101051949x231002X", "1101051949x231002X"),  # inner x not "fixed"
    ],
)
def test_normalize_id_number(raw: str, expected: str) -> None:
    assert normalize_id_number(raw) == expected


# --- validate_id_number: valid numbers -----------------------------------


F1949 = IdNumberInfo(STANDARD_FEMALE, "110105", date(1949, 12, 31), "F")


@pytest.mark.parametrize(
    ("raw", "doc_type", "expected"),
    [
        (STANDARD_FEMALE, RID, F1949),
        ("11010519491231002x", RID, F1949),
        ("１１０１０５１９４９１２３１００２Ｘ", RID, F1949),
        (MALE, RID, IdNumberInfo(MALE, "110105", date(1990, 3, 7), "M")),
        (PERMIT_HK, HMT, IdNumberInfo(PERMIT_HK, "810000", date(1994, 8, 23), "M")),
        (PERMIT_MO, HMT, IdNumberInfo(PERMIT_MO, "820000", date(1980, 1, 1), "F")),
        (PERMIT_TW, HMT, IdNumberInfo(PERMIT_TW, "830000", date(2000, 2, 29), "M")),
        # born today: not in the future, so the number itself is valid
        (BORN_TODAY, RID, IdNumberInfo(BORN_TODAY, "110105", TODAY, "M")),
    ],
)
def test_validate_id_number_valid(raw: str, doc_type: DocumentType, expected: IdNumberInfo) -> None:
    assert validate_id_number(raw, doc_type, today=TODAY) == expected


# --- validate_id_number: invalid numbers ---------------------------------

INVALID_NUMBERS = [
    # format
    ("11010519491231002", RID, "id_number_format"),  # 17 chars
    ("11010519491231002X1", RID, "id_number_format"),  # 19 chars
    ("", RID, "id_number_format"),
    ("11010519A91231002X", RID, "id_number_format"),  # letter inside
    ("1101051949123100X2", RID, "id_number_format"),  # X not last
    ("1101051949x231002X", RID, "id_number_format"),  # lower-case x inside
    ("110105\t19491231002X", RID, "id_number_format"),  # tab is not stripped
    ("١١٠١٠٥١٩٤٩١٢٣١٠٠٢X", RID, "id_number_format"),  # Arabic-Indic digits
    ("11010519491231002Y", RID, "id_number_format"),
    # region
    ("990105199003071232", RID, "id_number_region"),
    ("710000199001010015", RID, "id_number_region"),  # Taiwan code never issued
    (PERMIT_HK, RID, "id_number_region"),  # permit prefix on a resident ID
    ("44030419900307123X", HMT, "id_number_region"),  # mainland number as permit
    ("811234199003071232", HMT, "id_number_region"),  # 81 but not 810000
    # birth date
    ("110105199902300023", RID, "id_number_birth_date"),  # 1999-02-30
    ("110105199013010018", RID, "id_number_birth_date"),  # month 13
    ("110105199001000015", RID, "id_number_birth_date"),  # day 00
    ("11010520050229001X", RID, "id_number_birth_date"),  # 2005 not a leap year
    ("110105210001010015", RID, "id_number_birth_date"),  # far future
    ("110105202506160019", RID, "id_number_birth_date"),  # tomorrow
    ("110105189912310015", RID, "id_number_birth_date"),  # before 1900
    ("440524188001010014", RID, "id_number_birth_date"),  # standard example, 1880
    # check digit
    ("110105199003071230", RID, "id_number_check_digit"),
    ("110105199003071238", RID, "id_number_check_digit"),
    ("110105199007031239", RID, "id_number_check_digit"),  # 03/07 transposed
    ("110105194912310020", RID, "id_number_check_digit"),
    ("110105199003071249", RID, "id_number_check_digit"),  # adjacent digit typo
    ("810000199408230012", HMT, "id_number_check_digit"),
]


@pytest.mark.parametrize(("raw", "doc_type", "code"), INVALID_NUMBERS)
def test_validate_id_number_invalid(raw: str, doc_type: DocumentType, code: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_id_number(raw, doc_type, today=TODAY)
    err = exc.value
    assert err.code == code
    assert err.details == {"field": "id_number"}
    assert err.message and err.message_zh and err.message != err.message_zh
    # Personal data: the number must not leak into any error text.
    body = repr(err.to_dict())
    if len(raw) >= 6:
        assert raw not in body
        assert normalize_id_number(raw) not in body


def test_check_digit_message_is_chinese() -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_id_number("110105199003071230", RID, today=TODAY)
    assert "身份证号码校验位错误" in exc.value.message_zh


# --- age -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "today", "expected"),
    [
        (date(2007, 6, 15), date(2025, 6, 15), 18),  # 18th birthday
        (date(2007, 6, 16), date(2025, 6, 15), 17),  # one day short
        (date(2007, 6, 15), date(2025, 6, 14), 17),
        (date(1990, 3, 7), date(2025, 6, 15), 35),
        (date(2025, 6, 15), date(2025, 6, 15), 0),
        (date(2024, 12, 31), date(2025, 1, 1), 0),
        (date(2004, 2, 29), date(2022, 2, 28), 17),  # common year: not yet
        (date(2004, 2, 29), date(2022, 3, 1), 18),  # reached on 1 March
        (date(2004, 2, 29), date(2024, 2, 28), 19),
        (date(2004, 2, 29), date(2024, 2, 29), 20),  # leap year: on the day
    ],
)
def test_age_on(birth: date, today: date, expected: int) -> None:
    assert age_on(birth, today) == expected


def test_age_on_rejects_today_before_birth() -> None:
    with pytest.raises(ValueError, match="before the birth date"):
        age_on(date(2025, 6, 16), date(2025, 6, 15))


# --- validate_identity ---------------------------------------------------

VALIDITY = "document_validity_invalid"
EXPIRED = "document_expired"

BASE: dict[str, object] = {
    "doc_type": RID,
    "id_number": MALE,
    "birth_date": date(1990, 3, 7),
    "sex": "M",
    "valid_from": date(2015, 1, 1),
    "valid_until": date(2035, 1, 1),
    "today": TODAY,
}
PERMIT = {
    **BASE,
    "doc_type": HMT,
    "id_number": PERMIT_HK,
    "birth_date": date(1994, 8, 23),
    "valid_from": date(2023, 1, 1),
    "valid_until": date(2028, 1, 1),
}
ADULT_TODAY = {  # turns 18 exactly on TODAY
    **BASE,
    "id_number": "440304200706150028",
    "birth_date": date(2007, 6, 15),
    "sex": "F",
    "valid_from": date(2020, 1, 1),
    "valid_until": date(2030, 1, 1),
}
ONE_DAY_SHORT = {
    **ADULT_TODAY,
    "id_number": "440304200706160015",
    "birth_date": date(2007, 6, 16),
    "sex": "M",
}


@pytest.mark.parametrize(
    ("kwargs", "number", "sex"),
    [
        (BASE, MALE, "M"),
        ({**BASE, "id_number": "110105 19900307 1239"}, MALE, "M"),
        ({**BASE, "valid_until": None}, MALE, "M"),  # long-term resident ID
        ({**BASE, "valid_until": TODAY}, MALE, "M"),  # last day still valid
        ({**BASE, "valid_from": TODAY}, MALE, "M"),  # issued today
        (PERMIT, PERMIT_HK, "M"),
        (ADULT_TODAY, "440304200706150028", "F"),
        ({**ONE_DAY_SHORT, "min_age": 17}, "440304200706160015", "M"),
    ],
)
def test_validate_identity_valid(kwargs: dict[str, object], number: str, sex: str) -> None:
    info = validate_identity(**kwargs)  # type: ignore[arg-type]
    assert info.number == number
    assert info.sex == sex


@pytest.mark.parametrize(
    ("kwargs", "code", "field"),
    [
        ({**BASE, "id_number": MALE[:-1] + "0"}, "id_number_check_digit", "id_number"),
        ({**BASE, "doc_type": HMT}, "id_number_region", "id_number"),
        ({**BASE, "birth_date": date(1990, 3, 8)}, "birth_date_mismatch", "birth_date"),
        ({**BASE, "sex": "F"}, "sex_mismatch", "sex"),
        ({**BASE, "sex": "m"}, "sex_mismatch", "sex"),
        ({**BASE, "sex": ""}, "sex_mismatch", "sex"),
        ({**BASE, "valid_until": date(2025, 6, 14)}, EXPIRED, "valid_until"),
        ({**PERMIT, "valid_until": date(2024, 1, 1)}, EXPIRED, "valid_until"),
        ({**PERMIT, "valid_until": None}, VALIDITY, "valid_until"),
        ({**BASE, "valid_from": date(2025, 6, 16)}, VALIDITY, "valid_from"),
        ({**BASE, "valid_from": date(1980, 1, 1)}, VALIDITY, "valid_from"),
        (
            {**BASE, "valid_from": date(2020, 1, 1), "valid_until": date(2019, 1, 1)},
            VALIDITY,
            "valid_until",
        ),
        (ONE_DAY_SHORT, "underage", "birth_date"),
        ({**ADULT_TODAY, "min_age": 19}, "underage", "birth_date"),
    ],
)
def test_validate_identity_invalid(kwargs: dict[str, object], code: str, field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_identity(**kwargs)  # type: ignore[arg-type]
    assert exc.value.code == code
    assert exc.value.details == {"field": field}
    number = normalize_id_number(str(kwargs["id_number"]))
    assert number not in repr(exc.value.to_dict())


def test_underage_message_is_bilingual() -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_identity(**ONE_DAY_SHORT)  # type: ignore[arg-type]
    assert "18" in exc.value.message
    assert "年满18周岁" in exc.value.message_zh


# --- names ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("张三", "张三"),
        ("阿沛·阿旺晋美", "阿沛·阿旺晋美"),
        ("John Smith", "John Smith"),
        ("  John   Smith  ", "John Smith"),
        ("John\u3000Smith", "John Smith"),  # ideographic space collapsed
        ("Mary-Jane Watson", "Mary-Jane Watson"),
        ("José Müller", "José Müller"),
        ("王", "王"),
        ("\U00020000", "\U00020000"),  # CJK Extension B
        ("a" * 60, "a" * 60),
    ],
)
def test_validate_name_accepts(raw: str, expected: str) -> None:
    assert validate_name(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "<script>alert(1)</script>",
        "张<三",
        "张>三",
        'John "Bob" Smith',
        "O'Brien",
        "Tom & Jerry",
        "张三;",
        "{张三}",
        "张\\三",
        "张三1",
        "张三１",  # full-width digit
        "John\tSmith",  # control character inside
        "John\nSmith",
        "张\u200b三",  # zero-width space (format character)
        "张\u202e三",  # right-to-left override
        "",
        "   ",
        "a" * 61,
        "·阿沛",
        "阿沛·",
        "-John",
        "Иван",  # Cyrillic is not on either accepted document
        "李@四",
    ],
)
def test_validate_name_rejects(raw: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_name(raw)
    assert exc.value.code == "name_invalid"
    assert exc.value.details == {"field": "name"}
    assert "姓名" in exc.value.message_zh
