"""One way to declare, check and build an adapter to an outside service.

An adapter kind (identity registry, SMS, account system, email, ...) declares in its own
module the config section it reads, the key that chooses the implementation (the
"switch", ``provider`` for gateways) and, per implementation, how to build it and what
it needs. Config validation checks every kind through :meth:`AdapterKind.problem`, and
the runtime builds every adapter through :func:`build`; a new kind is one declaration
plus a line in :mod:`server.adapters.catalogue`, with no new branch anywhere else.

Nothing here does I/O or imports ``server.config`` (config imports this): sections are
read by attribute, problems are returned as messages that name the key, and the caller
turns them into its own error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

__all__ = [
    "AdapterConfigError",
    "AdapterKind",
    "BuildContext",
    "Needs",
    "Provider",
    "Rule",
    "between",
    "build",
    "is_http_url",
    "one_of",
]

# The section a kind reads (a config dataclass, typed by the kind's own Protocol) and the
# adapter it builds.
S = TypeVar("S")
A = TypeVar("A")

# A check of one section: the message naming the key, or None when it is fine.
Rule = Callable[[str, Any], str | None]


class AdapterConfigError(ValueError):
    """A config section cannot build its adapter; the message names the key."""


@dataclass(frozen=True)
class BuildContext:
    """What builders may need beyond their section."""

    # Relative paths in a section (e.g. identity.sandbox_identities_file) resolve against
    # the config file's directory, which only the loaded Config knows.
    resolve_path: Callable[[str], Path] = Path


def is_http_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://"))


@dataclass(frozen=True)
class Needs:
    """Keys an implementation cannot work without.

    Missing or not ``valid``: ``"<section>.<first key>: <why>"``; an empty ``why`` is the
    standard ``"required when <section>.<switch> = '<provider>'"``.
    """

    keys: tuple[str, ...]
    why: str = ""
    valid: Callable[[Any], bool] = bool


@dataclass(frozen=True)
class Provider(Generic[S, A]):
    """One implementation of a kind, chosen when the switch holds its name."""

    build: Callable[[S, BuildContext], A]
    needs: tuple[Needs, ...] = ()
    # Keys that mean something with this implementation alone; set with another one they
    # are a mistake (a tester's file that production would silently ignore).
    only: tuple[str, ...] = ()


def _alternatives(names: list[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def between(key: str, low: float, high: float) -> Rule:
    def rule(section_name: str, section: Any) -> str | None:
        if low <= getattr(section, key) <= high:
            return None
        return f"{section_name}.{key}: must be between {low:g} and {high:g}"

    return rule


def one_of(key: str, values: tuple[str, ...]) -> Rule:
    def rule(section_name: str, section: Any) -> str | None:
        if getattr(section, key) in values:
            return None
        return f"{section_name}.{key}: must be {_alternatives(list(values))}"

    return rule


@dataclass(frozen=True)
class AdapterKind(Generic[S, A]):
    """An outside service the server talks to, and the implementations it can use."""

    section: str  # the config section, e.g. "sms"
    providers: Mapping[str, Provider[S, A]]
    switch: str = "provider"  # the section's key naming the implementation
    # Checks of the section whatever the implementation (ranges, enumerations).
    rules: tuple[Rule, ...] = field(default=())

    def provider_name(self, section: S) -> str:
        return str(getattr(section, self.switch))

    def problem(self, section: S) -> str | None:
        """The first thing wrong with ``section``, naming its key; None if it can build."""
        name = self.provider_name(section)
        where = f"{self.section}.{self.switch}"
        chosen = self.providers.get(name)
        if chosen is None:
            return f"{where}: must be {_alternatives(list(self.providers))}, got {name!r}"
        for need in chosen.needs:
            if not all(need.valid(getattr(section, key)) for key in need.keys):
                why = need.why or f"required when {where} = '{name}'"
                return f"{self.section}.{need.keys[0]}: {why}"
        for other_name, other in self.providers.items():
            for key in other.only if other_name != name else ():
                if getattr(section, key):
                    return f"{self.section}.{key}: only with {where} = '{other_name}'"
        for rule in self.rules:
            message = rule(self.section, section)
            if message is not None:
                return message
        return None


def build(kind: AdapterKind[S, A], section: S, context: BuildContext | None = None) -> A:
    """The adapter ``section`` asks for; :class:`AdapterConfigError` if it cannot be built.

    Checks again what config validation checked, so a section made in code (tests, the
    benchmark) gets the same answer as one read from config.toml.
    """
    problem = kind.problem(section)
    if problem is not None:
        raise AdapterConfigError(problem)
    provider = kind.providers[kind.provider_name(section)]
    return provider.build(section, context or BuildContext())
