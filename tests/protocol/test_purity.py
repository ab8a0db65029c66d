"""The pure core imports only the standard library: no asyncio, sockets or third parties."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import pytest

import mc_router.protocol

FORBIDDEN = {"asyncio", "socket", "selectors", "ssl", "threading", "subprocess"}
PACKAGE_DIR = Path(mc_router.protocol.__file__).parent
MODULES = sorted(PACKAGE_DIR.glob("*.py"))


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_every_module_is_scanned_and_imports() -> None:
    names = {m.name for m in pkgutil.iter_modules([str(PACKAGE_DIR)])}
    assert names == {p.stem for p in MODULES if p.stem != "__init__"}
    assert names >= {"types", "handshake", "frames", "status", "proxy"}
    for name in names:
        importlib.import_module(f"mc_router.protocol.{name}")


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_imports_are_stdlib_only(path: Path) -> None:
    roots = imported_roots(path)
    assert not roots & FORBIDDEN
    third_party = {
        r
        for r in roots
        if r not in sys.stdlib_module_names and r not in {"mc_router", "__future__"}
    }
    assert not third_party


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_only_errors_and_protocol_from_the_package(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mc_router"):
            assert node.module == "mc_router.errors" or node.module.startswith("mc_router.protocol")
