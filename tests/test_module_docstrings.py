"""Every module under app/ opens with a docstring saying what it is for (CONTRIBUTING.md, Documentation)."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"


def test_every_module_of_the_app_has_a_docstring() -> None:
    modules = sorted(APP.rglob("*.py"))
    missing = [str(path.relative_to(APP.parent)) for path in modules
               if not (ast.get_docstring(ast.parse(path.read_text())) or "").strip()]

    assert len(modules) > 100  # the walk found the package
    assert missing == []
