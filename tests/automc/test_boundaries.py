"""automc touches the core only through the route table's public interface (its docstring)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import mc_router.automc

PACKAGE_DIR = Path(mc_router.automc.__file__).parent
MODULES = sorted(PACKAGE_DIR.glob("*.py"))
ALLOWED_CORE = {"mc_router.routing", "mc_router.errors", "mc_router.logs"}
ALLOWED_THIRD_PARTY = {"psycopg", "aiohttp", "yarl"}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_every_module_is_scanned() -> None:
    assert {p.stem for p in MODULES} >= {"__init__", "dsn", "schema", "service", "sync", "waker"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_imports_only_the_public_routing_interface(path: Path) -> None:
    for name in imports(path):
        root = name.split(".")[0]
        if root == "mc_router":
            assert name in ALLOWED_CORE or name.startswith("mc_router.automc"), name
        elif root not in sys.stdlib_module_names and root != "__future__":
            assert root in ALLOWED_THIRD_PARTY, name


def test_the_package_init_imports_no_io_library() -> None:
    roots = {name.split(".")[0] for name in imports(PACKAGE_DIR / "__init__.py")}
    assert not roots & ALLOWED_THIRD_PARTY


def test_schema_sql_ships_with_the_package() -> None:
    assert (PACKAGE_DIR / "schema.sql").is_file()
