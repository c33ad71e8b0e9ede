"""Swagger UI (/docs) and ReDoc (/redoc) work offline: their pages load scripts and styles only from this service
(the copies the fastapi-offline package ships), and a headless Chromium that can reach nothing but this machine
renders both."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.main import create_app

ROOT = Path(__file__).resolve().parent.parent
ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def asset_urls(html: str) -> list[str]:
    """Every URL a page loads: script src, link href, and the schema URL given to the UI."""
    return re.findall(r'(?:src|href|spec-url)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_only_local_assets(page: str, client: httpx.AsyncClient) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    urls = asset_urls(response.text)

    assert urls, "no assets found: the page changed shape"
    assert [url for url in urls if not url.startswith("/")] == []
    for url in urls:
        served = await client.get(url)
        assert served.status_code == 200, url
        if url == "/openapi.json":
            assert served.headers["content-type"] == "application/json"
        else:
            assert served.headers["content-type"].startswith(ASSET_TYPES[Path(url).suffix]), url
            assert len(served.content) > 1000 or url.endswith(".png"), url


async def test_the_swagger_oauth2_redirect_page_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/oauth2-redirect")
    assert response.status_code == 200 and "oauth2" in response.text.lower()


def browser() -> str | None:
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served_url(tmp_path: Path) -> Iterator[str]:
    """`python -m app serve` on a free port, as a person runs it (a new SQLite file in DATA_DIR: serve migrates it)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PUBLIC_BASE_URL", "PORT", "DATABASE_URL")}
    env |= {"DATA_DIR": str(tmp_path), "WORKER_IN_PROCESS": "false", "LOG_LEVEL": "WARNING"}
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], cwd=ROOT, env=env,
                                   stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, f"the server exited: {log.read_text()[-2000:]}"
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def rendered(binary: str, url: str) -> str:
    """The page's DOM after its scripts ran, in a browser that can resolve no host but 127.0.0.1."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
             "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--virtual-time-budget=8000",
             "--dump-dom", url],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout


@pytest.mark.starts_first
def test_a_headless_browser_renders_both_pages_offline(served_url: str) -> None:
    binary = browser()
    if binary is None:
        reason = f"headless-browser check skipped: none of {', '.join(BROWSERS)} is installed"
        print(reason)
        pytest.skip(reason)

    swagger = rendered(binary, f"{served_url}/docs")
    redoc = rendered(binary, f"{served_url}/redoc")

    # Swagger UI fetched /openapi.json and drew every operation (the POST that starts a payment among them)
    assert 'data-path="/v1/payments"' in swagger, swagger[:2000]
    if create_app().openapi().get("components", {}).get("securitySchemes"):
        assert "authorize" in swagger  # the Authorize button, shown when the schema declares a bearer scheme
    # ReDoc drew the API's title and its operations
    assert re.search(r"<h1[^>]*>Payment service", redoc), redoc[:2000]
    assert "operation/" in redoc
