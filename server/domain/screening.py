"""Anti-money-laundering screening (A3): who is on which list, and what a hit means.

A3: every application is screened against watch lists before it is queued and again
before approval; a possible match is held for compliance, a match stops it. This module
is the pure part: the person screened, the list entries, how names are compared and the
decision. Reading list files and calling a vendor is ``server/adapters/screening.py``.

Names are compared in normalised forms (:func:`name_forms`): full-width characters
made half-width, spacing and punctuation removed, case folded, accents dropped,
traditional Chinese made simplified; a Chinese name also has its pinyin forms, so 张三
is found as "Zhang San", "ZHANG SAN", "zhangsan" or "San ZHANG". Pinyin only bridges
scripts: two Chinese names that merely sound alike (张三, 章三) are not a hit.
"""

from __future__ import annotations

import functools
import itertools
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

__all__ = [
    "ListEntry",
    "ListKind",
    "Match",
    "MatchBasis",
    "NameForms",
    "Person",
    "ScreeningLists",
    "ScreeningResult",
    "birth_dates_agree",
    "name_forms",
    "normalise_id_number",
    "normalise_name",
    "overall_result",
]


class ScreeningResult(StrEnum):
    CLEAR = "clear"
    POSSIBLE_MATCH = "possible_match"  # held for compliance (A3)
    MATCH = "match"  # stops the application (A3)
    UNAVAILABLE = "unavailable"  # not screened: never taken as clear


class ListKind(StrEnum):
    SANCTIONS = "sanctions"
    PEP = "pep"  # politically exposed persons: enhanced due diligence, not a refusal
    BLOCKLIST = "blocklist"  # the agency's own


class MatchBasis(StrEnum):
    ID_NUMBER = "id_number"
    NAME = "name"
    VENDOR = "vendor"  # the vendor matched by its own rules and did not say how


@dataclass(frozen=True)
class Person:
    """The investor as screened."""

    name: str
    id_number: str
    birth_date: date | None = None
    nationality: str = ""  # ISO 3166-1 alpha-3, e.g. "CHN"; informative only
    id_type: str = ""  # e.g. "resident_id"; passed on to the vendor


@dataclass(frozen=True)
class ListEntry:
    kind: ListKind
    entry_id: str  # the list's own id, unique within its file
    name: str  # may be empty when the entry is known by its ID number only
    aliases: tuple[str, ...] = ()
    id_number: str = ""
    birth_date: str = ""  # "", "YYYY" or "YYYY-MM-DD": lists often know the year only
    nationality: str = ""
    note: str = ""


@dataclass(frozen=True)
class Match:
    """One list entry the person was found on."""

    list_name: str  # a ListKind value in the sandbox; the vendor's own list name over http
    entry_id: str
    basis: MatchBasis
    result: ScreeningResult  # what this hit alone means: MATCH or POSSIBLE_MATCH


_SEVERITY = (ScreeningResult.CLEAR, ScreeningResult.POSSIBLE_MATCH, ScreeningResult.MATCH)


def overall_result(matches: Iterable[Match]) -> ScreeningResult:
    """The gravest hit decides; no hit is CLEAR."""
    return max((m.result for m in matches), key=_SEVERITY.index, default=ScreeningResult.CLEAR)


# --- normalisation -----------------------------------------------------------------------

# A Chinese name has at most a few readings per character; every combination is a
# possible spelling, but a handful of readings over a long name multiply quickly.
MAX_PINYIN_FORMS = 64
# "ü" is spelt "v" by pinyin input, "u" and "yu" on older and newer passports (吕: LV,
# LU, LYU): every spelling is a form.
_U_UMLAUT_SPELLINGS = ("v", "u", "yu")


def _is_han(char: str) -> bool:
    return unicodedata.name(char, "").startswith(("CJK UNIFIED", "CJK COMPATIBILITY"))


@functools.cache
def _to_simplified() -> Callable[[str], str]:
    # Imported on first use: its dictionaries take a moment to load, and processes that
    # never screen against local lists (the http provider, the command line) skip it.
    from opencc import OpenCC

    convert: Callable[[str], str] = OpenCC("t2s").convert
    return convert


def _readings(char: str) -> list[str]:
    from pypinyin import Style, pinyin

    found = pinyin(char, style=Style.NORMAL, heteronym=True, errors="ignore")
    return found[0] if found else []


def _most_likely_reading(text: str) -> list[str]:
    from pypinyin import lazy_pinyin

    # Phrase-aware: the reading a Chinese reader would give the whole name first.
    return lazy_pinyin(text)


def _tokens(name: str) -> list[str]:
    """Runs of letters and digits after width, script, case and accent folding."""
    text = unicodedata.normalize("NFKC", name)  # Ｚｈａｎｇ　Ｓａｎ -> Zhang San
    text = _to_simplified()(text).casefold()
    # Accents dropped (é -> e, ü -> u) so Latin spellings with and without them agree.
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    tokens: list[str] = []
    current: list[str] = []
    for char in text:
        if char.isalnum():
            current.append(char)
        elif current:
            tokens.append("".join(current))
            current = []
    if current:
        tokens.append("".join(current))
    return tokens


def normalise_name(name: str) -> str:
    """One comparable form: ``" 張 三 "``, ``"张三"`` -> ``"张三"``; ``"ZHANG, San"`` ->
    ``"zhangsan"``."""
    return "".join(_tokens(name))


def _rotations(parts: list[str]) -> Iterator[str]:
    # Family name first or last ("ZHANG San", "San ZHANG"): every rotation of the parts.
    for i in range(len(parts)):
        yield "".join(parts[i:] + parts[:i])


def _umlaut_spellings(syllable: str) -> list[str]:
    if "v" not in syllable:
        return [syllable]
    return [syllable.replace("v", spelling) for spelling in _U_UMLAUT_SPELLINGS]


def _pinyin_forms(han: str) -> frozenset[str]:
    """Pinyin spellings of a Chinese name, family name first and last."""
    per_char = [[s for r in _readings(c) for s in _umlaut_spellings(r)] or [c] for c in han]
    likely = [_umlaut_spellings(s)[0] for s in _most_likely_reading(han)]
    spellings = itertools.chain(
        [likely], itertools.islice(itertools.product(*per_char), MAX_PINYIN_FORMS)
    )
    forms: set[str] = set()
    for syllables in spellings:
        forms.add("".join(syllables))
        # The family name is one character or, for a compound one (欧阳, 司马), two.
        for split in (1, 2) if len(syllables) > 2 else (1,):
            forms.add("".join(syllables[split:]) + "".join(syllables[:split]))
    return frozenset(forms)


@dataclass(frozen=True)
class NameForms:
    """How a name can be compared: as written (normalised), and romanised when Chinese."""

    written: frozenset[str] = frozenset()
    romanised: frozenset[str] = frozenset()

    def meets(self, other: NameForms) -> bool:
        # Written meets written in any script; romanised forms only meet a name written in
        # Latin letters, never each other (homophones are different people).
        return bool(
            self.written & other.written
            or self.romanised & other.written
            or self.written & other.romanised
        )

    def __or__(self, other: NameForms) -> NameForms:
        return NameForms(self.written | other.written, self.romanised | other.romanised)


def name_forms(name: str) -> NameForms:
    tokens = _tokens(name)
    if not tokens:
        return NameForms()
    joined = "".join(tokens)
    if all(_is_han(c) for c in joined):
        return NameForms(written=frozenset({joined}), romanised=_pinyin_forms(joined))
    return NameForms(written=frozenset(_rotations(tokens)))


def normalise_id_number(raw: str) -> str:
    """ID numbers compare exactly, after width, spacing, hyphens and case."""
    text = unicodedata.normalize("NFKC", raw)
    return "".join(c for c in text if c.isalnum()).upper()


def birth_dates_agree(person: date | None, listed: str) -> bool:
    """Unknown on either side agrees; a year-only entry agrees with any date in that year."""
    if person is None or not listed:
        return True
    if len(listed) == 4:
        return person.year == int(listed)
    return person == date.fromisoformat(listed)


# --- the decision ------------------------------------------------------------------------

# What a hit means, by list and basis (docs/risk.md, "Screening (A3)").
_ID_HIT = {
    ListKind.SANCTIONS: ScreeningResult.MATCH,
    ListKind.BLOCKLIST: ScreeningResult.MATCH,
    ListKind.PEP: ScreeningResult.POSSIBLE_MATCH,
}
_NAME_HIT = ScreeningResult.POSSIBLE_MATCH


@dataclass(frozen=True)
class _Indexed:
    entry: ListEntry
    forms: NameForms


@dataclass(frozen=True)
class ScreeningLists:
    """Entries of every list, indexed once for screening many people."""

    entries: tuple[ListEntry, ...]
    _by_id: dict[str, list[ListEntry]] = field(init=False, repr=False, compare=False)
    _named: tuple[_Indexed, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id: dict[str, list[ListEntry]] = {}
        named: list[_Indexed] = []
        for entry in self.entries:
            if entry.id_number:
                by_id.setdefault(normalise_id_number(entry.id_number), []).append(entry)
            forms = NameForms()
            for written in (entry.name, *entry.aliases):
                forms |= name_forms(written)
            if forms.written:
                named.append(_Indexed(entry, forms))
        object.__setattr__(self, "_by_id", by_id)
        object.__setattr__(self, "_named", tuple(named))

    def counts(self) -> dict[str, int]:
        return {kind.value: sum(e.kind is kind for e in self.entries) for kind in ListKind}

    def screen(self, person: Person) -> tuple[ScreeningResult, tuple[Match, ...]]:
        """The decision for ``person`` and every entry behind it.

        - the exact ID number on a sanctions or blocklist entry: MATCH
        - the exact ID number on a PEP entry: POSSIBLE_MATCH
        - a name or alias in any normalised form, birth dates agreeing: POSSIBLE_MATCH
        - a name whose listed birth date disagrees with the person's: no hit
        One entry counts once, on its strongest basis.
        """
        hits: dict[tuple[ListKind, str], Match] = {}
        number = normalise_id_number(person.id_number)
        for entry in self._by_id.get(number, []) if number else []:
            hits[(entry.kind, entry.entry_id)] = Match(
                entry.kind.value, entry.entry_id, MatchBasis.ID_NUMBER, _ID_HIT[entry.kind]
            )
        forms = name_forms(person.name)
        for indexed in self._named:
            entry = indexed.entry
            if (entry.kind, entry.entry_id) in hits or not forms.meets(indexed.forms):
                continue
            if birth_dates_agree(person.birth_date, entry.birth_date):
                hits[(entry.kind, entry.entry_id)] = Match(
                    entry.kind.value, entry.entry_id, MatchBasis.NAME, _NAME_HIT
                )
        matches = tuple(sorted(hits.values(), key=_match_order))
        return overall_result(matches), matches


def _match_order(match: Match) -> tuple[Any, ...]:
    return (-_SEVERITY.index(match.result), match.list_name, match.entry_id)
