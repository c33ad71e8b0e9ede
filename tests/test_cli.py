"""The command line (`python -m app`): its help, the worker command and its old module path, one line instead of
a traceback when the database cannot be used, and where the default SQLite file goes."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from app.__main__ import build_parser
from app.core.config import PROJECT_DIR, Settings
from app.core.db import database_problem
from tests.conftest import TEST_DATABASE_URL

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("serve", "worker", "migrate", "token")
# Settings a command run here must not inherit from the test run or the developer's shell.
CLEARED = ("DATABASE_URL", "DATA_DIR", "PUBLIC_BASE_URL", "PORT", "REDIS_URL", "PAYMENT_GATEWAY_MODE")


def run(*args: str, cwd: Path = ROOT, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in CLEARED} | env
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=timeout, check=False)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    [choices] = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(choices.choices)


def test_help_lists_the_commands() -> None:
    shown = run("app", "--help")

    assert shown.returncode == 0, shown.stderr
    for command in COMMANDS:
        assert f"    {command} " in shown.stdout, command


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_option_of_every_command_has_help(command: str) -> None:
    parser = subcommands()[command]
    undocumented = [action.dest for action in parser._actions
                    if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()]

    assert parser.description, f"{command} has no description"
    assert undocumented == []


def test_serve_help_describes_its_options() -> None:
    shown = run("app", "serve", "--help")

    assert shown.returncode == 0, shown.stderr
    assert "address to listen on" in shown.stdout and "the PORT setting" in shown.stdout
    assert "uvicorn worker processes" in shown.stdout


@pytest.mark.parametrize("module", ["app.worker", "app"])
def test_worker_help_does_not_start_a_worker(module: str, tmp_path: Path) -> None:
    args = ("app.worker", "--help") if module == "app.worker" else ("app", "worker", "--help")
    shown = run(*args, timeout=30, DATA_DIR=str(tmp_path))

    assert shown.returncode == 0, shown.stderr
    assert "--once" in shown.stdout
    assert "worker started" not in shown.stdout + shown.stderr
    assert not (tmp_path / "payments.db").exists()


def test_the_worker_command_runs_the_worker_and_says_where_the_sandbox_does_not_answer(database_url: str) -> None:
    """`--once` drains the queues and exits; a worker whose PORT is not the API's says so, naming the URL."""
    done = run("app", "worker", "--once", DATABASE_URL=database_url, PORT="9")

    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "worker started" in output
    assert "the sandbox gateway at http://127.0.0.1:9/sandbox/paystack does not answer" in output


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("command", ["migrate", "serve", "worker"])
def test_an_unreachable_database_server_is_one_line(command: str) -> None:
    url = "postgresql+asyncpg://postgres:secret@127.0.0.1:1/payments"  # nothing listens on port 1
    line = one_line_error(run("app", command, DATABASE_URL=url))

    assert line == ("error: cannot reach the database server at 127.0.0.1:1: start PostgreSQL there or fix "
                    "DATABASE_URL (postgresql+asyncpg://postgres:***@127.0.0.1:1/payments)")


@pytest.mark.skipif(not TEST_DATABASE_URL, reason="needs a PostgreSQL server (set TEST_DATABASE_URL)")
def test_migrating_a_database_that_does_not_exist_is_one_line_saying_how_to_create_it() -> None:
    assert TEST_DATABASE_URL is not None
    url = TEST_DATABASE_URL.rpartition("/")[0] + f"/no_such_database_{os.getpid()}"
    line = one_line_error(run("app", "migrate", DATABASE_URL=url))

    assert line.startswith(f"error: database 'no_such_database_{os.getpid()}' does not exist on ")
    assert "create it (createdb -h " in line and f"no_such_database_{os.getpid()})" in line


def test_database_problems_name_what_to_do() -> None:
    url = "postgresql+asyncpg://app:pw@db.internal:5433/payments"
    missing = asyncpg.InvalidCatalogNameError('database "payments" does not exist')
    wrapped = RuntimeError("while migrating")
    wrapped.__cause__ = missing

    assert database_problem(wrapped, url) == (
        "database 'payments' does not exist on db.internal:5433: create it (createdb -h db.internal -p 5433 -U app "
        "payments) or point DATABASE_URL at one that does (postgresql+asyncpg://app:***@db.internal:5433/payments)")
    assert "refused the login" in (database_problem(asyncpg.InvalidPasswordError("no"), url) or "")
    assert database_problem(ValueError("a bug"), url) is None  # anything else keeps its traceback


def test_an_sqlite_file_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = one_line_error(run("app", "migrate", DATA_DIR=str(blocker / "data")))

    assert line == (f"error: cannot create or open the SQLite file {blocker / 'data' / 'payments.db'}: set DATA_DIR "
                    "(or DATABASE_URL) to a writable place")


def test_the_default_sqlite_file_does_not_depend_on_the_working_directory(tmp_path: Path) -> None:
    shown = run("app", "settings", "env", cwd=tmp_path)  # any command from elsewhere; then the setting itself
    assert shown.returncode == 0
    printed = subprocess.run(
        [sys.executable, "-c", "from app.core.config import Settings; print(Settings(_env_file=None).database_url)"],
        cwd=tmp_path, env={k: v for k, v in os.environ.items() if k not in CLEARED}, capture_output=True, text=True,
        check=True,
    ).stdout.strip()

    assert printed == f"sqlite+aiosqlite:///{PROJECT_DIR / 'data' / 'payments.db'}"
    assert (PROJECT_DIR / "pyproject.toml").is_file()  # a source checkout: data/ beside it


def test_data_dir_holds_the_default_sqlite_file_and_is_created(tmp_path: Path) -> None:
    data = tmp_path / "nested" / "data"
    migrated = run("app", "migrate", cwd=tmp_path, DATA_DIR=str(data))

    assert migrated.returncode == 0, migrated.stderr
    assert (data / "payments.db").is_file()
    settings = Settings(_env_file=None, data_dir=str(data), database_url="")  # "": the default, not the tests' URL
    assert settings.database_url == f"sqlite+aiosqlite:///{data / 'payments.db'}"


def test_outside_a_source_checkout_the_default_is_the_user_data_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("app.core.config.PROJECT_DIR", tmp_path / "site-packages")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))

    assert Settings(_env_file=None).data_path == tmp_path / "xdg" / "payment-service"


def test_serve_no_migrate_refuses_a_schema_that_is_behind(tmp_path: Path) -> None:
    line = one_line_error(run("app", "serve", "--no-migrate", DATA_DIR=str(tmp_path)))

    assert line.startswith("error: the database schema is at revision none (empty database), not ")
    assert line.endswith(": run `python -m app migrate` first")
    assert run("app", "migrate", DATA_DIR=str(tmp_path)).returncode == 0  # it did not migrate: this one does
