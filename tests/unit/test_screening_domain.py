"""A3 screening, the pure part: how names and ID numbers are compared, and what a hit on
each list means (server/domain/screening.py)."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

import pytest

from server.domain.screening import (
    ListEntry,
    ListKind,
    Match,
    MatchBasis,
    Person,
    ScreeningLists,
    ScreeningResult,
    birth_dates_agree,
    name_forms,
    normalise_id_number,
    normalise_name,
    overall_result,
)

ZHANG_ID = "11010519491231002X"
ZHANG_BORN = date(1949, 12, 31)


# --- normalisation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "normal"),
    [
        ("张三", "张三"),
        (" 张 三 ", "张三"),  # spacing
        ("张\u3000三", "张三"),  # ideographic space
        ("張三", "张三"),  # traditional
        ("陳大文", "陈大文"),
        ("ＺＨＡＮＧ　ＳＡＮ", "zhangsan"),  # full-width letters and space
        ("ZHANG, San", "zhangsan"),  # case, punctuation
        ("Zhang-San", "zhangsan"),
        ("José MÜLLER", "josemuller"),  # accents
        ("阿卜杜拉·买买提", "阿卜杜拉买买提"),  # the middle dot of transliterated names
        ("  ", ""),
    ],
)
def test_names_are_normalised(written: str, normal: str) -> None:
    assert normalise_name(written) == normal


@pytest.mark.parametrize(
    "latin", ["Zhang San", "ZHANG SAN", "zhangsan", "ZHANG, San", "San ZHANG", "Ｚｈａｎｇ　Ｓａｎ"]
)
def test_a_chinese_name_meets_its_pinyin(latin: str) -> None:
    assert name_forms("张三").meets(name_forms(latin))
    assert name_forms(latin).meets(name_forms("張三"))  # and the traditional form


def test_pinyin_covers_every_reading_of_a_character() -> None:
    # 单 reads dan, chan or shan; as a family name it is Shan.
    assert name_forms("单雄信").meets(name_forms("Shan Xiongxin"))
    assert name_forms("单雄信").meets(name_forms("Dan Xiongxin"))
    assert name_forms("曾国藩").meets(name_forms("ZENG Guofan"))
    # A compound family name written last.
    assert name_forms("欧阳修").meets(name_forms("Xiu Ouyang"))


@pytest.mark.parametrize("latin", ["LV Bu", "LU Bu", "LYU Bu"])
def test_u_umlaut_has_every_passport_spelling(latin: str) -> None:
    assert name_forms("吕布").meets(name_forms(latin))


def test_chinese_names_that_only_sound_alike_do_not_meet() -> None:
    assert not name_forms("张三").meets(name_forms("章三"))
    assert not name_forms("张三").meets(name_forms("张四"))
    assert not name_forms("Zhang San").meets(name_forms("Zhang Si"))


def test_latin_names_meet_in_any_rotation() -> None:
    assert name_forms("Ivan Petrovich Testov").meets(name_forms("TESTOV, Ivan Petrovich"))
    assert not name_forms("Ivan Testov").meets(name_forms("Ivana Testova"))


def test_an_empty_name_meets_nothing() -> None:
    assert not name_forms("").meets(name_forms(""))
    assert not name_forms("·").meets(name_forms("张三"))


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("11010519491231002x", ZHANG_ID),
        (" 110105 19491231 002X ", ZHANG_ID),
        ("１１０１０５１９４９１２３１００２Ｘ", ZHANG_ID),
        ("e-1234 5678", "E12345678"),
    ],
)
def test_id_numbers_are_normalised(raw: str, normal: str) -> None:
    assert normalise_id_number(raw) == normal


def test_birth_dates_agree() -> None:
    assert birth_dates_agree(ZHANG_BORN, "1949-12-31")
    assert birth_dates_agree(ZHANG_BORN, "1949")
    assert birth_dates_agree(ZHANG_BORN, "")
    assert birth_dates_agree(None, "1970-01-01")
    assert not birth_dates_agree(ZHANG_BORN, "1950")
    assert not birth_dates_agree(ZHANG_BORN, "1949-12-30")


# --- the decision ------------------------------------------------------------------------


def _lists(*entries: ListEntry) -> ScreeningLists:
    return ScreeningLists(entries)


def _zhang(**changes: Any) -> Person:
    return dataclasses.replace(Person("张三", ZHANG_ID, ZHANG_BORN), **changes)


@pytest.mark.parametrize(
    ("kind", "result"),
    [
        (ListKind.SANCTIONS, ScreeningResult.MATCH),
        (ListKind.BLOCKLIST, ScreeningResult.MATCH),
        (ListKind.PEP, ScreeningResult.POSSIBLE_MATCH),
    ],
)
def test_an_id_number_hit(kind: ListKind, result: ScreeningResult) -> None:
    # The ID number decides whatever the listed name: it identifies the person.
    lists = _lists(ListEntry(kind, "E1", "Someone Else", id_number="11010519491231002x"))
    assert lists.screen(_zhang(name="Zhang San")) == (
        result,
        (Match(kind.value, "E1", MatchBasis.ID_NUMBER, result),),
    )


@pytest.mark.parametrize("kind", list(ListKind))
def test_a_name_hit_is_a_possible_match_on_every_list(kind: ListKind) -> None:
    lists = _lists(ListEntry(kind, "E1", "ZHANG San", birth_date="1949"))
    result, matches = lists.screen(_zhang(name="張三"))
    assert result is ScreeningResult.POSSIBLE_MATCH
    assert matches == (Match(kind.value, "E1", MatchBasis.NAME, ScreeningResult.POSSIBLE_MATCH),)


def test_an_alias_hit_counts_like_the_name() -> None:
    lists = _lists(ListEntry(ListKind.SANCTIONS, "E1", "Some Alias", aliases=("张三", "Z. San")))
    assert lists.screen(_zhang())[0] is ScreeningResult.POSSIBLE_MATCH


def test_a_name_hit_with_another_birth_date_is_no_hit() -> None:
    lists = _lists(
        ListEntry(ListKind.SANCTIONS, "E1", "张三", birth_date="1962-05-01"),
        ListEntry(ListKind.PEP, "E2", "Zhang San", birth_date="1950"),
    )
    assert lists.screen(_zhang()) == (ScreeningResult.CLEAR, ())
    # Without the person's birth date the name alone is enough to hold.
    assert lists.screen(_zhang(birth_date=None))[0] is ScreeningResult.POSSIBLE_MATCH


def test_the_gravest_hit_decides_and_each_entry_counts_once() -> None:
    lists = _lists(
        ListEntry(ListKind.PEP, "P1", "张三"),
        ListEntry(ListKind.BLOCKLIST, "B1", "張三", id_number=ZHANG_ID),  # name and number
        ListEntry(ListKind.SANCTIONS, "S1", "Wang Wu"),
    )
    result, matches = lists.screen(_zhang())
    assert result is ScreeningResult.MATCH
    assert [(m.list_name, m.entry_id, m.basis) for m in matches] == [
        ("blocklist", "B1", MatchBasis.ID_NUMBER),
        ("pep", "P1", MatchBasis.NAME),
    ]


def test_nobody_on_the_lists_is_clear() -> None:
    lists = _lists(
        ListEntry(ListKind.SANCTIONS, "S1", "李四", id_number="110101200001010010"),
        ListEntry(ListKind.BLOCKLIST, "B1", "", id_number="X1"),
    )
    assert lists.screen(_zhang()) == (ScreeningResult.CLEAR, ())
    assert lists.screen(_zhang(id_number="")) == (ScreeningResult.CLEAR, ())
    assert _lists().screen(_zhang()) == (ScreeningResult.CLEAR, ())


def test_counts_per_list() -> None:
    lists = _lists(
        ListEntry(ListKind.SANCTIONS, "S1", "a"),
        ListEntry(ListKind.SANCTIONS, "S2", "b"),
        ListEntry(ListKind.PEP, "P1", "c"),
    )
    assert lists.counts() == {"sanctions": 2, "pep": 1, "blocklist": 0}


def test_overall_result() -> None:
    possible = Match("pep", "P1", MatchBasis.NAME, ScreeningResult.POSSIBLE_MATCH)
    match = Match("x", "S1", MatchBasis.VENDOR, ScreeningResult.MATCH)
    assert overall_result([]) is ScreeningResult.CLEAR
    assert overall_result([possible]) is ScreeningResult.POSSIBLE_MATCH
    assert overall_result([possible, match]) is ScreeningResult.MATCH
