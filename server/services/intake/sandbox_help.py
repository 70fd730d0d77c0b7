"""What a tester needs on the investor page when the identity registry is the sandbox:
its fictional identities, with plausible document data to type into the form."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from server.adapters.identity_registry import DEFAULT_SANDBOX_IDENTITIES
from server.domain.errors import InvalidInput
from server.domain.identity_document import DocumentType, age_on, validate_id_number

_PERMIT_PREFIXES = ("810000", "820000", "830000")
# Resident ID cards issued at 46 or older are valid for life (长期).
_LONG_TERM_AGE = 46


@dataclass(frozen=True)
class SandboxIdentity:
    """A fictional registry entry with what a tester needs to fill the identity form."""

    name: str
    id_number: str
    document_type: str
    sex: str
    birth_date: str
    valid_from: str
    valid_until: str  # "" = long-term


def sandbox_identities(
    entries: tuple[tuple[str, str], ...], *, today: date
) -> list[SandboxIdentity]:
    """The sandbox registry's identities, decoded from their numbers; invalid ones skipped."""
    result = []
    for name, number in entries:
        doc_type = (
            DocumentType.HMT_RESIDENCE_PERMIT
            if number.startswith(_PERMIT_PREFIXES)
            else DocumentType.RESIDENT_ID
        )
        try:
            info = validate_id_number(number, doc_type, today=today)
        except InvalidInput:
            continue
        # A plausible document: issued last year; a permit runs 5 years, a young
        # person's ID card 20, an older person's ID card for life.
        valid_from = date(today.year - 1, 6, 1)
        if doc_type is DocumentType.HMT_RESIDENCE_PERMIT:
            valid_until = f"{today.year + 4}-05-31"
        elif age_on(info.birth_date, valid_from) >= _LONG_TERM_AGE:
            valid_until = ""
        else:
            valid_until = f"{today.year + 19}-05-31"
        result.append(
            SandboxIdentity(
                name=name,
                id_number=info.number,
                document_type=doc_type.value,
                sex=info.sex,
                birth_date=info.birth_date.isoformat(),
                valid_from=valid_from.isoformat(),
                valid_until=valid_until,
            )
        )
    return result


def tester_identities(*, today: date) -> list[SandboxIdentity]:
    return sandbox_identities(DEFAULT_SANDBOX_IDENTITIES, today=today)
