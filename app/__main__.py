"""Command line: `python -m app serve` (migrate, then run), `migrate`, `token` (dev tokens), `sandbox`
(the Paystack sandbox as a process of its own), `docs api` (write docs/api.md) and `settings env|markdown`
(the settings' documentation: `.env.example`, docs/configuration.md)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app import apidocs
from app.core.config import get_settings
from app.core.logging import configure_logging
from app.core.security import issue_token
from app.core.settings_docs import env_example, markdown_page
from app.gateway.sandbox.server import create_sandbox_app

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

    config = Config(str(alembic_ini()))
    config.attributes["database_url"] = database_url or get_settings().database_url
    command.upgrade(config, revision)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="upgrade the schema, then run the API (and in-process worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)

    commands.add_parser("migrate", help="create or upgrade the database schema")

    sandbox = commands.add_parser(
        "sandbox", help="run the Paystack sandbox alone, for services in test mode (PAYSTACK_BASE_URL)")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8001)
    sandbox.add_argument("--webhook-url",
                         help="where its webhooks go (default: {PUBLIC_BASE_URL}/v1/webhooks/paystack)")
    sandbox.add_argument("--public-url", help="where it is reached, for checkout links (default: the served address)")

    token = commands.add_parser("token", help="print a development JWT signed with JWT_SECRET")
    token.add_argument("--sub", required=True, help="user id")
    token.add_argument("--role", action="append", default=[], choices=["admin", "service"])
    token.add_argument("--email")
    token.add_argument("--ttl", type=int, default=3600, help="seconds")

    docs = commands.add_parser("docs", help="write a generated document")
    docs.add_argument("document", choices=["api"], help="api: docs/api.md, from the app's OpenAPI schema")
    docs.add_argument("--check", action="store_true", help="write nothing; exit 1 if the file is out of date")

    settings_docs = commands.add_parser("settings", help="print the settings' documentation, made from the code")
    settings_docs.add_argument("format", choices=["env", "markdown"],
                               help="env: the body of .env.example; markdown: docs/configuration.md")

    args = parser.parse_args(argv)
    if args.command == "docs":
        return write_api_doc(check=args.check)
    if args.command == "settings":
        # Made from the Settings class alone: neither the environment nor `.env` changes what is printed.
        sys.stdout.write(env_example() if args.format == "env" else markdown_page())
        return 0
    settings = get_settings()
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
    migrate()
    if args.command == "serve":
        import uvicorn

        if "PUBLIC_BASE_URL" not in os.environ and not settings.model_fields_set & {"public_base_url"}:
            # The sandbox's checkout links and webhooks must point at the port actually served.
            os.environ["PUBLIC_BASE_URL"] = served_address(args.host, args.port)
            get_settings.cache_clear()

        uvicorn.run("app.main:app", host=args.host, port=args.port, workers=args.workers,
                    proxy_headers=False, log_config=None)  # see TRUSTED_PROXIES
    return 0


if __name__ == "__main__":
    sys.exit(main())
