"""The layer table of docs/architecture.md is the code's: imports point downward, the
edge calls services only, stages build on earlier stages (import-linter contracts in
pyproject.toml), the domain stays pure, and the document names every package there is."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "server"
# Below the web edge nothing may know aiohttp's server side: services are called from
# pages, sockets, the API and the command line alike.
BELOW_THE_EDGE = ("domain", "store", "queue", "media", "adapters", "services")
# The domain is pure (STYLE.md): no I/O, no event loop, no database, no web.
IMPURE_FOR_DOMAIN = ("asyncio", "sqlalchemy", "aiohttp", "aiortc", "av", "redis", "asyncpg")


def _imports(path: Path) -> list[str]:
    """Every module a file imports, as dotted names (``from a import b`` gives a.b too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def _python_files(package: str) -> list[Path]:
    return [p for p in (SERVER / package).rglob("*.py") if "migrations" not in p.parts]


def test_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache", "--config", "pyproject.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for contract in ("Imports point downward", "do no use-case work", "Stages of the flow"):
        assert f"{contract}" in result.stdout, f"contract missing: {contract}"


def test_nothing_below_the_edge_imports_the_web_server() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for package in BELOW_THE_EDGE
        for path in _python_files(package)
        for name in _imports(path)
        if name == "aiohttp.web" or name.startswith("aiohttp.web.") or name == "aiohttp_jinja2"
    ]
    assert offenders == []


def test_the_domain_is_pure() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in _python_files("domain")
        for name in _imports(path)
        if name.split(".")[0] in IMPURE_FOR_DOMAIN
    ]
    assert offenders == []


def test_the_checks_see_a_violation(tmp_path: Path) -> None:
    """The AST reader used above finds the import forms it must find."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import asyncio\nfrom aiohttp import web\nfrom sqlalchemy.orm import Session\n"
    )
    found = _imports(probe)
    assert {"asyncio", "aiohttp.web", "sqlalchemy.orm.Session"} <= set(found)


def _documented_packages() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`server/([a-z_]+)(?:/|\.py)?`", table))


def test_the_layer_table_names_every_package() -> None:
    actual = {
        p.stem if p.is_file() else p.name
        for p in SERVER.iterdir()
        if (p.is_dir() and (p / "__init__.py").exists())
        or (p.suffix == ".py" and p.name != "__init__.py")
    }
    documented = _documented_packages()
    assert actual - documented == set(), "in the tree, not in docs/architecture.md"
    assert documented - actual == set(), "in docs/architecture.md, not in the tree"
