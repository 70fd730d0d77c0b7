"""Agency-replaceable investor content: the A4 questionnaire and risk disclosure.

The default texts live in ``intake.toml`` next to this file; an agency points
the server at its own copy. Any problem is a ``ValueError`` naming the file and
the key at fault, so that a bad edit stops the server at start-up instead of
showing investors a broken questionnaire.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from server.domain.risk_rule_file import RuleFileError, rule_set_from_toml
from server.domain.risk_rules import RuleSet
from server.domain.script import Script, parse_script
from server.domain.suitability import (
    DisclosureDocument,
    Questionnaire,
    parse_disclosure,
    parse_questionnaire,
)

__all__ = [
    "DEFAULT_INTAKE_PATH",
    "DEFAULT_RISK_RULES_PATH",
    "DEFAULT_SCRIPTS_DIR",
    "DEFAULT_SCRIPT_PATH",
    "builtin_script_path",
    "load_intake_content",
    "load_risk_rules",
    "load_script",
]

T = TypeVar("T")

DEFAULT_INTAKE_PATH = Path(__file__).with_name("intake.toml")
DEFAULT_SCRIPT_PATH = Path(__file__).with_name("script.toml")
DEFAULT_RISK_RULES_PATH = Path(__file__).with_name("risk_rules.toml")
# One witnessing script per holder's service (A20, A17.4): ``<business type>.toml``.
DEFAULT_SCRIPTS_DIR = Path(__file__).with_name("scripts")


def builtin_script_path(business_type: str) -> Path:
    """The built-in script of a business: ``script.toml`` for an opening, else
    ``scripts/<type>.toml``."""
    if business_type == "open":
        return DEFAULT_SCRIPT_PATH
    return DEFAULT_SCRIPTS_DIR / f"{business_type}.toml"


def load_script(path: Path | None = None) -> Script:
    """Read and validate the witnessing script (A17.4) from ``[script]`` in a TOML file."""
    source = DEFAULT_SCRIPT_PATH if path is None else path
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{source}: invalid TOML: {exc}") from exc
    table = data.get("script")
    if not isinstance(table, dict):
        raise ValueError(f"{source}: [script] is missing")
    return parse_script(table, where=str(source))


def load_risk_rules(path: Path | None = None) -> RuleSet:
    """Read and validate the risk rules (A23); ``RuleFileError`` names the file and key."""
    source = DEFAULT_RISK_RULES_PATH if path is None else path
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleFileError("", f"cannot read: {exc.strerror or exc}", source=str(source)) from exc
    except UnicodeDecodeError as exc:
        raise RuleFileError("", f"not UTF-8 text: {exc.reason}", source=str(source)) from exc
    try:
        return rule_set_from_toml(text)
    except RuleFileError as exc:
        raise RuleFileError(exc.key, exc.reason, source=str(source)) from exc


def load_intake_content(path: Path | None = None) -> tuple[Questionnaire, DisclosureDocument]:
    """Read and validate ``[questionnaire]`` and ``[disclosure]`` from a TOML file."""
    source = DEFAULT_INTAKE_PATH if path is None else path
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{source}: not UTF-8 text: {exc.reason}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: invalid TOML: {exc}") from exc
    # Other top-level tables are tolerated: they may belong to other loaders.
    return (
        _section(source, data, "questionnaire", parse_questionnaire),
        _section(source, data, "disclosure", parse_disclosure),
    )


def _section(
    source: Path, data: dict[str, Any], name: str, parse: Callable[[Mapping[str, Any]], T]
) -> T:
    table = data.get(name)
    if not isinstance(table, dict):
        what = "is missing" if table is None else "must be a table"
        raise ValueError(f"{source}: [{name}] {what}")
    try:
        return parse(table)
    except ValueError as exc:
        # The parsers name paths relative to their table; prefix the table.
        raise ValueError(f"{source}: {name}.{exc}") from exc
