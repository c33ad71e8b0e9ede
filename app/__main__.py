"""Command line: `python -m app serve` (migrate, then run), `worker` (the background worker alone), `migrate`,
`token` (dev tokens), `sandbox` (the Paystack sandbox as a process of its own), `docs api` (write docs/api.md)
and `settings env|markdown` (the settings' documentation: `.env.example`, docs/configuration.md).

`python -m app --help` and each command's `--help` describe every option."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import ValidationError

from app import apidocs
from app.core.config import DEFAULT_PORT, Settings, get_settings
from app.core.db import check_database, database_problem, prepare_sqlite_directory
from app.core.logging import configure_logging
from app.core.security import issue_token
from app.core.settings_docs import env_example, markdown_page
from app.gateway.sandbox.server import create_sandbox_app

log = logging.getLogger("app")

ROOT = Path(__file__).resolve().parent.parent


def alembic_ini() -> Path:
    """The project's alembic.ini: $ALEMBIC_CONFIG, else the working directory, else beside the package."""
    for candidate in (os.environ.get("ALEMBIC_CONFIG"), Path.cwd() / "alembic.ini", ROOT / "alembic.ini"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError("alembic.ini not found: run from the project directory or set ALEMBIC_CONFIG")


def migrate(database_url: str | None = None, revision: str = "head") -> None:
    """Create or upgrade the schema to `revision`."""
    from alembic import command
    from alembic.config import Config

    url = database_url or get_settings().database_url
    prepare_sqlite_directory(url)
    config = Config(str(alembic_ini()))
    config.attributes["database_url"] = url
    command.upgrade(config, revision)


def schema_behind(database_url: str) -> str | None:
    """None when the database's schema is at the latest revision; else the one line that says to migrate."""
    import asyncio

    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.ext.asyncio import create_async_engine

    head = ScriptDirectory.from_config(Config(str(alembic_ini()))).get_current_head()

    async def current() -> str | None:
        engine = create_async_engine(database_url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
        finally:
            await engine.dispose()

    prepare_sqlite_directory(database_url)
    revision = asyncio.run(current())
    if revision == head:
        return None
    return (f"the database schema is at revision {revision or 'none (empty database)'}, not {head}: run "
            "`python -m app migrate` first")


class DatabaseUnusable(Exception):
    """The database cannot be used at all; the message is the one line that says what to do."""


@contextlib.contextmanager
def database_errors_explained(database_url: str) -> Iterator[None]:
    """An error meaning that the database is missing or out of reach becomes DatabaseUnusable (one line, no
    traceback); any other error is left as it is."""
    try:
        yield
    except Exception as error:
        problem = database_problem(error, database_url)
        if problem is None:
            raise
        raise DatabaseUnusable(problem) from None


def prepare_schema(database_url: str, *, upgrade: bool) -> None:
    """Upgrade the schema; or (not `upgrade`) refuse, as DatabaseUnusable, a schema that is behind."""
    with database_errors_explained(database_url):
        if upgrade:
            migrate(database_url)
            return
        behind = schema_behind(database_url)
    if behind:
        raise DatabaseUnusable(behind)


def write_api_doc(*, check: bool) -> int:
    # Imported here, not above: importing app.main builds the application, which the other commands
    # (migrate, token, settings) must not pay for or depend on.
    from app.main import app

    text = apidocs.render(app)
    if check:
        current = apidocs.API_DOC.read_text() if apidocs.API_DOC.is_file() else ""
        if current != text:
            print(f"{apidocs.API_DOC} is out of date: run python -m app docs api", file=sys.stderr)
            return 1
        return 0
    apidocs.API_DOC.write_text(text)
    print(f"wrote {apidocs.API_DOC}")
    return 0


def served_address(host: str, port: int) -> str:
    """The URL a server bound to `host`:`port` is reached at from this machine."""
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def run_sandbox(host: str, port: int, webhook_url: str | None, public_url: str | None) -> None:
    """One process, no database: the sandbox keeps its records in memory, so it is never run with
    several workers."""
    import uvicorn

    settings = get_settings()
    configure_logging(settings.log_level)
    app = create_sandbox_app(
        settings,
        public_base_url=(public_url or served_address(host, port)).rstrip("/"),
        webhook_url=webhook_url or f"{settings.public_base_url}/v1/webhooks/paystack",
    )
    uvicorn.run(app, host=host, port=port, proxy_headers=False, log_config=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="The payment service. Settings come from the environment and .env (see docs/configuration.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="upgrade the schema, then run the API (and the in-process worker unless WORKER_IN_PROCESS=false)",
        description="Upgrade the schema (unless --no-migrate), then run the API with uvicorn.")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: %(default)s; 0.0.0.0 for every interface)")
    serve.add_argument("--port", type=int, default=None,
                       help=f"port to listen on (default: the PORT setting, {DEFAULT_PORT}); with PUBLIC_BASE_URL "
                       "unset the service's address becomes http://127.0.0.1:PORT")
    serve.add_argument("--workers", type=int, default=1,
                       help="uvicorn worker processes (default: %(default)s; more than one needs PostgreSQL)")
    serve.add_argument("--no-migrate", action="store_true",
                       help="do not upgrade the schema; refuse to start unless it is at the latest revision (for "
                       "deployments that run `migrate` once, as a step of their own, before any process starts)")

    worker = commands.add_parser(
        "worker", help="run the background worker alone (webhooks, refunds, payouts, reconciliation)",
        description="Run the background worker as a process of its own, beside an API started with "
        "WORKER_IN_PROCESS=false; several may run against PostgreSQL. Same as `python -m app.worker`.")
    worker.add_argument("--once", action="store_true",
                        help="do the work waiting now, then exit (default: run until SIGINT or SIGTERM)")

    commands.add_parser("migrate", help="create or upgrade the database schema, then exit",
                        description="Create or upgrade the database schema (DATABASE_URL) to the latest "
                        "revision. Run it once per deployment, before starting API and worker processes.")

    token = commands.add_parser("token", help="print a development JWT signed with JWT_SECRET (not in live mode)",
                                description="Print a bearer token signed with JWT_SECRET (HS256), for development.")
    token.add_argument("--sub", required=True, help="the user id (the token's `sub` claim)")
    token.add_argument("--role", action="append", default=[], choices=["admin", "service"],
                       help="a role (the `roles` claim); repeat for several; none: an ordinary user")
    token.add_argument("--email", help="the `email` claim (optional)")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default: %(default)s)")

    sandbox = commands.add_parser(
        "sandbox", help="run the Paystack sandbox alone, for services in test mode (PAYSTACK_BASE_URL)",
        description="Run the Paystack sandbox as a process of its own (no database; records in memory).")
    sandbox.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    sandbox.add_argument("--port", type=int, default=8001, help="port to listen on (default: %(default)s)")
    sandbox.add_argument("--webhook-url",
                         help="where its webhooks go (default: {PUBLIC_BASE_URL}/v1/webhooks/paystack)")
    sandbox.add_argument("--public-url", help="where it is reached, for checkout links (default: the served address)")

    docs = commands.add_parser("docs", help="write a generated document",
                               description="Write a document generated from the code.")
    docs.add_argument("document", choices=["api"], help="api: docs/api.md, from the app's OpenAPI schema")
    docs.add_argument("--check", action="store_true", help="write nothing; exit 1 if the file is out of date")

    settings_docs = commands.add_parser("settings", help="print the settings' documentation, made from the code",
                                        description="Print the settings' documentation, made from the code.")
    settings_docs.add_argument("format", choices=["env", "markdown"],
                               help="env: the body of .env.example; markdown: docs/configuration.md")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "docs":
        return write_api_doc(check=args.check)
    if args.command == "settings":
        # Made from the Settings class alone: neither the environment nor `.env` changes what is printed.
        sys.stdout.write(env_example() if args.format == "env" else markdown_page())
        return 0
    try:
        settings = get_settings()
    except ValidationError as error:
        print(f"error: the settings are not valid: {_first_problem(error)}", file=sys.stderr)
        return 2
    if args.command == "token":
        try:
            print(issue_token(settings, args.sub, args.role, args.ttl, args.email))
        except RuntimeError as error:
            print(f"refused: {error}", file=sys.stderr)
            return 2
        return 0
    if args.command == "sandbox":
        run_sandbox(args.host, args.port, args.webhook_url, args.public_url)
        return 0
    try:
        if args.command == "worker":
            run_worker(settings, once=args.once)
            return 0
        prepare_schema(settings.database_url, upgrade=not (args.command == "serve" and args.no_migrate))
    except DatabaseUnusable as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if args.command == "serve":
        serve(settings, args.host, args.port, args.workers)
    return 0


def run_worker(settings: Settings, *, once: bool) -> None:
    """The worker, after one connection that shows the database can be used."""
    import asyncio

    import uvloop  # installed with uvicorn[standard]; the API process runs on it too

    # Imported here: the worker imports every domain, which the other commands need not pay for.
    from app.worker import main as worker_main

    with database_errors_explained(settings.database_url):
        asyncio.run(check_database(settings.database_url))
    uvloop.run(worker_main(once=once))


def serve(settings: Settings, host: str, port: int | None, workers: int) -> None:
    import uvicorn

    port = port or settings.port
    configure_logging(settings.log_level)
    mismatch = sandbox_address_mismatch(settings, port)
    if mismatch:
        log.warning(mismatch)
    if port != settings.port:
        # --port stands for PORT in this process and the uvicorn workers it starts (which read the settings
        # again), so that a PUBLIC_BASE_URL left empty is derived from the port actually served.
        os.environ["PORT"] = str(port)
        get_settings.cache_clear()
    uvicorn.run("app.main:app", host=host, port=port, workers=workers,
                proxy_headers=False, log_config=None)  # see TRUSTED_PROXIES


def sandbox_address_mismatch(settings: Settings, port: int) -> str | None:
    """The warning owed when the sandbox's links and webhooks (PUBLIC_BASE_URL) point at another port than the
    one served: the checkout page would not load and webhooks would not arrive, unless a proxy forwards them."""
    if not settings.is_sandbox or settings.public_base_url_derived:
        return None
    url = urlsplit(settings.public_base_url)
    public_port = url.port or (443 if url.scheme == "https" else 80)
    if public_port == port:
        return None
    return (f"PUBLIC_BASE_URL is {settings.public_base_url} but this server listens on port {port}: the sandbox's "
            f"checkout links, its webhooks and the gateway calls go to port {public_port} (fine only if a proxy "
            f"forwards it here); unset PUBLIC_BASE_URL to derive it from the port served")


def _first_problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())).upper()
    return f"{where}: {first['msg']}" if where else first["msg"]


if __name__ == "__main__":
    sys.exit(main())
