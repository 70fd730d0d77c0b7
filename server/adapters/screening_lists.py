"""The list files of the screening sandbox (A3): sanctions, politically exposed persons and
the agency's own blocklist, one CSV format for all three (docs/risk.md, "Screening (A3)").

Read once when the adapter is built; a malformed line is an error naming the file and the
line, so a broken list stops the start instead of screening against part of it.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from pathlib import Path

from server.domain.screening import ListEntry, ListKind, normalise_id_number

__all__ = ["BUILT_IN_LISTS", "LIST_HEADER", "load_list_file"]

LIST_HEADER = ("entry_id", "name", "aliases", "id_number", "birth_date", "nationality", "note")
# The fictional lists the sandbox screens against when no file is configured.
BUILT_IN_LISTS = Path(__file__).resolve().parent.parent / "content" / "screening"
_ALIAS_SEPARATOR = "|"


def _birth_date(text: str) -> str:
    if len(text) == 4 and text.isdigit():
        return text
    if len(text) == 10:  # fromisoformat alone would also take "19700101"
        try:
            date.fromisoformat(text)
        except ValueError:
            pass
        else:
            return text
    raise ValueError(f"birth_date {text!r}: expected YYYY or YYYY-MM-DD")


def _entry(kind: ListKind, row: list[str]) -> ListEntry:
    if len(row) != len(LIST_HEADER):
        raise ValueError(f"expected {len(LIST_HEADER)} fields ({','.join(LIST_HEADER)})")
    entry_id, name, aliases, id_number, born, nationality, note = (f.strip() for f in row)
    if not entry_id:
        raise ValueError("entry_id is empty")
    if not name and not id_number:
        raise ValueError("an entry needs a name or an id_number")
    return ListEntry(
        kind=kind,
        entry_id=entry_id,
        name=name,
        aliases=tuple(a.strip() for a in aliases.split(_ALIAS_SEPARATOR) if a.strip()),
        id_number=normalise_id_number(id_number),
        birth_date=_birth_date(born) if born else "",
        nationality=nationality.upper(),
        note=note,
    )


def load_list_file(path: Path, kind: ListKind) -> list[ListEntry]:
    """Entries of one list from a UTF-8 CSV file with the header ``LIST_HEADER``; ``#``
    comments and blank lines allowed, aliases separated by ``|``. Any malformed line is a
    ValueError naming ``<path>:<line>``."""
    text = path.read_text(encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(text), strict=True)
    entries: list[ListEntry] = []
    first_seen: dict[str, int] = {}
    header_seen = False
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ValueError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from None
        lineno = reader.line_num
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if not header_seen:
            if tuple(f.strip() for f in row) != LIST_HEADER:
                raise ValueError(f"{path}:{lineno}: expected the header {','.join(LIST_HEADER)}")
            header_seen = True
            continue
        try:
            entry = _entry(kind, row)
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: {exc}") from None
        if entry.entry_id in first_seen:
            raise ValueError(
                f"{path}:{lineno}: entry_id {entry.entry_id!r} repeats line "
                f"{first_seen[entry.entry_id]}"
            )
        first_seen[entry.entry_id] = lineno
        entries.append(entry)
    if not header_seen:
        raise ValueError(f"{path}:1: expected the header {','.join(LIST_HEADER)}")
    return entries
