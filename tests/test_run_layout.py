"""The run's steps (``wagtail_llm_actions/run/``) stay a lower layer, in rooms of readable size.

The service orchestrates the steps; views, viewsets, forms, ``wagtail_hooks`` and the job,
editor and pipeline layers use them. A step that imported any of those back (even inside a
function) would tie the run to the layers above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .test_structure import DOMAIN_IN_ENGINE, ENGINE, WIRING

PACKAGE = Path(__file__).resolve().parent.parent / "wagtail_llm_actions"
RUN = PACKAGE / "run"

#: Modules above the run's steps, as ``wagtail_llm_actions.<name>``: the engine and the wiring.
HIGHER = {*ENGINE, *WIRING}


def imported_modules(path: Path) -> list[str]:
    """Every module ``path`` imports, as an absolute dotted name (relative imports resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.append(base)
            found.extend(f"{base}.{alias.name}" for alias in node.names)
    return found


RUN_MODULES = sorted(RUN.rglob("*.py"))


@pytest.mark.parametrize("path", RUN_MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_run_step_imports_no_higher_layer(path):
    for name in imported_modules(path):
        parts = name.split(".")
        if parts[0] == "wagtail_llm_actions" and len(parts) > 1:
            if ".".join(parts[1:]).startswith(DOMAIN_IN_ENGINE):
                continue  # domain modules inside an engine package
            assert parts[1] not in HIGHER, f"{path.relative_to(PACKAGE)} imports {name}"


#: Modules this layout check covers: the run's steps and what puts them together.
SIZED = [*RUN_MODULES, PACKAGE / "service.py", PACKAGE / "pipelines.py"]


@pytest.mark.parametrize("path", SIZED, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_run_is_in_rooms_of_readable_size(path):
    """No module over 600 lines, no class over 300, no function over 80."""
    source = path.read_text()
    assert len(source.splitlines()) <= 600, f"{path.name}: {len(source.splitlines())} lines"
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            lines = node.end_lineno - node.lineno + 1
            limit = 300 if isinstance(node, ast.ClassDef) else 80
            assert lines <= limit, f"{path.name}: {node.name} has {lines} lines"
