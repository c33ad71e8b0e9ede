"""Test wiring: a fresh schema per test, the app with its lifespan, and an HTTP client.

SQLite (a temporary file per test, copied from a schema built once per process) by default;
PostgreSQL when TEST_DATABASE_URL is set (tables emptied before each test), Redis for rate limits
when TEST_REDIS_URL is set.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
if TEST_REDIS_URL:
    os.environ["REDIS_URL"] = TEST_REDIS_URL  # the module-level app (app.main.app) reads it on import
os.environ.setdefault("DATABASE_URL", "sqlite+aiosqlite:///:memory:")

import httpx  # noqa: E402
from asgi_lifespan import LifespanManager  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from app.core.config import Settings  # noqa: E402
from app.core.security import issue_token  # noqa: E402
from app.main import create_app  # noqa: E402
from app.models import Base  # noqa: E402

BASE_URL = "http://testserver"
requires_postgres = pytest.mark.skipif(
    not TEST_DATABASE_URL, reason="concurrency test: needs PostgreSQL (set TEST_DATABASE_URL)"
)

# A test's line for the end of the run (`record_property(SUMMARY_PROPERTY, line)`): under pytest-xdist a test's
# own output never reaches the terminal, but its recorded properties travel with its report.
SUMMARY_PROPERTY = "summary_line"

APPEND_ONLY_TABLES = {"audit_log"}
# Per PostgreSQL database of this process: the statements that empty it between tests.
_emptying_scripts: dict[str, str] = {}
_own_databases: dict[str, str] = {}


async def _own_database(url: str) -> str:
    """A database of this test process's own next to TEST_DATABASE_URL's, so that several
    pytest runs on one server (developers, CI) never empty each other's tables."""
    if url not in _own_databases:
        import asyncpg

        base, _, name = url.rpartition("/")
        own = f"{name}_{os.getpid()}"
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{own}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{own}"')
        finally:
            await conn.close()
        _own_databases[url] = f"{base}/{own}"
    return _own_databases[url]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        for original, own in _own_databases.items():
            conn = await asyncpg.connect(original.replace("postgresql+asyncpg://", "postgresql://"))
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{own.rpartition("/")[2]}" WITH (FORCE)')
            finally:
                await conn.close()

    if _own_databases:
        asyncio.run(drop())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("starts_first") is None)  # stable: otherwise as collected


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        if isinstance(report, pytest.TestReport) and report.when == "call"
        for name, value in report.user_properties
        if name == SUMMARY_PROPERTY
    ]
    if lines:
        terminalreporter.write_sep("-", "summary lines of tests")
        for line in lines:
            terminalreporter.write_line(str(line))


async def _prepare_postgres(url: str) -> None:
    """The schema on the first call, then empty tables for each test.

    Emptied with DELETE, children first, and the sequences restarted (what TRUNCATE ... RESTART IDENTITY
    does): TRUNCATE gives every table new files, about 0.1 s a test, for the few rows a test leaves.
    One round trip: the statements of one simple query run in one transaction."""
    if url not in _emptying_scripts:
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
            await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
            await conn.run_sync(Base.metadata.create_all)
            sequences = (await conn.execute(
                text("SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()")
            )).scalars().all()
        await engine.dispose()
        # The audit log refuses DELETE (a trigger: it is append-only); TRUNCATE, which no row trigger sees,
        # empties it for the next test.
        _emptying_scripts[url] = "".join(
            [f'TRUNCATE "{table.name}";' if table.name in APPEND_ONLY_TABLES else f'DELETE FROM "{table.name}";'
             for table in reversed(Base.metadata.sorted_tables)]
            + [f'ALTER SEQUENCE "{sequence}" RESTART;' for sequence in sequences]
        )
        return
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(_emptying_scripts[url])
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def sqlite_schema_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file with the whole schema, built once per test process: creating the tables
    costs far more than copying the file, which each test then does for a database of its own."""
    template = tmp_path_factory.mktemp("schema") / "template.db"
    engine = create_engine(f"sqlite:///{template}")
    try:
        with engine.begin() as conn:
            Base.metadata.create_all(conn)
    finally:
        engine.dispose()
    return template


@pytest.fixture
async def database_url(tmp_path: Path, sqlite_schema_template: Path) -> str:
    if TEST_DATABASE_URL:
        url = await _own_database(TEST_DATABASE_URL)
        await _prepare_postgres(url)
        return url
    database = tmp_path / "test.db"
    shutil.copyfile(sqlite_schema_template, database)
    return f"sqlite+aiosqlite:///{database}"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Tests override settings by redefining this fixture or with `make_settings`."""
    return {}


@pytest.fixture
def make_settings(database_url: str, settings_overrides: dict[str, Any]) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "redis_url": TEST_REDIS_URL,
            "public_base_url": BASE_URL,
            "payment_gateway_mode": "sandbox",
            # strong enough for test mode too, which refuses a short or development JWT secret
            "jwt_secret": "test-suite-jwt-secret-0123456789abcdef",
            "worker_in_process": False,
            "rate_limit_enabled": False,
            "gateway_timeout_seconds": 2.0,
            "gateway_max_retries": 1,
            "sandbox_settle_delay_seconds": 0.01,
            "sandbox_webhook_retry_delays": "0.05,0.1",
            "reconcile_pending_after_seconds": 0,
            "log_level": "WARNING",
            **settings_overrides,
            **overrides,
        }
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings, loopback=True)
    async with LifespanManager(application, startup_timeout=30, shutdown_timeout=30):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE_URL) as http:
        yield http


@pytest.fixture
def auth(settings: Settings) -> Callable[..., dict[str, str]]:
    """Authorization headers for a user: `auth("alice")`, `auth("root", admin=True)`."""

    def headers(user_id: str, *, admin: bool = False, service: bool = False) -> dict[str, str]:
        roles = (["admin"] if admin else []) + (["service"] if service else [])
        return {"Authorization": f"Bearer {issue_token(settings, user_id, roles)}"}

    return headers


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
