"""docs/api.md is what `python -m app docs api` makes from the app as it is: a route added, removed or changed
without regenerating the file fails here (and so in CI)."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from fastapi import FastAPI

from app.__main__ import main
from app.apidocs import API_DOC, NOTES, WHEN, error_codes, operations, render
from app.main import app as served_app


def test_docs_api_md_is_up_to_date() -> None:
    expected = render(served_app)
    current = API_DOC.read_text()

    diff = "".join(difflib.unified_diff(current.splitlines(True), expected.splitlines(True),
                                        "docs/api.md", "generated", n=1))
    assert current == expected, f"docs/api.md is out of date: run python -m app docs api\n{diff[:4000]}"


def test_every_route_has_notes_and_no_notes_outlive_their_route() -> None:
    served = {(operation.method, operation.path) for operation in operations(served_app)}

    assert set(NOTES) == served


def test_a_route_without_notes_is_refused_by_name() -> None:
    extra = FastAPI()
    extra.include_router(served_app.router)

    @extra.get("/v1/undocumented")
    async def undocumented() -> dict[str, str]:
        return {}

    with pytest.raises(KeyError, match="GET /v1/undocumented has no entry in NOTES"):
        render(extra)


def test_every_error_code_says_when_it_is_answered() -> None:
    assert {code for code, _ in error_codes()} == set(WHEN)


def test_the_check_command_fails_on_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "api.md"
    stale.write_text("# HTTP API\n")
    monkeypatch.setattr("app.apidocs.API_DOC", stale)

    assert main(["docs", "api", "--check"]) == 1
    assert main(["docs", "api"]) == 0
    assert main(["docs", "api", "--check"]) == 0
    assert stale.read_text() == render(served_app)
