"""The lock files, the image and compose.yaml. Docker is not needed: the files are read for the properties they
promise (the lock matches pyproject.toml and pins every requirement by hash; the image installs the locked
dependencies before the code, holds one copy of `app` and never migrates in its command; compose runs a one-off
migration before the API and the worker, with PostgreSQL, Redis and PUBLIC_BASE_URL wired)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCKS = {"requirements.lock": PYPROJECT["dependencies"],
         "requirements-test.lock": PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["test"]}
REGENERATE = "regenerate with the command at the top of the lock file"


def pins(lock: str) -> dict[str, str]:
    """name -> version of every `name==version` line; each one must carry hashes."""
    text = (ROOT / lock).read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    found = {}
    for entry in entries:
        match = re.match(r"([A-Za-z0-9_.\-]+)==([^\s;\\]+)", entry)
        assert match, f"{lock}: not a pinned requirement: {entry[:80]}"
        assert "--hash=sha256:" in entry, f"{lock}: {match.group(1)} has no hash"
        found[canonicalize_name(match.group(1))] = match.group(2)
    return found


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_pins_every_requirement_of_pyproject(lock: str) -> None:
    pinned = pins(lock)
    for line in LOCKS[lock]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock}: {requirement.name} missing; {REGENERATE}"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock}: {requirement.name}=={pinned[name]} does not satisfy {requirement.specifier}; {REGENERATE}")


def test_the_test_lock_keeps_the_versions_of_the_runtime_lock() -> None:
    runtime, test = pins("requirements.lock"), pins("requirements-test.lock")
    assert {name: test.get(name) for name in runtime} == runtime


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), per stage."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            if line.startswith("FROM "):
                stages.append([])
            stages[-1].append(line.strip())
    return stages


def test_the_image_installs_the_locked_dependencies_before_the_code() -> None:
    final = dockerfile_stages()[-1]
    lock_install = next(i for i, line in enumerate(final) if "--require-hashes -r requirements.lock" in line)
    code = [i for i, line in enumerate(final) if line.startswith("COPY") and ("app" in line.split()[1:-1]
                                                                            or "--from=wheel" in line)]
    assert final[lock_install - 1] == "COPY requirements.lock ./"
    assert code and min(code) > lock_install
    assert any("pip install --no-cache-dir --no-deps /tmp/wheels/" in line for line in final)


def test_the_image_holds_one_copy_of_app_and_does_not_migrate_when_it_starts() -> None:
    final = dockerfile_stages()[-1]
    assert not [line for line in final if "PYTHONPATH" in line]
    assert not [line for line in final if line.startswith("COPY app") or line.startswith("COPY . ")]
    [command] = [line for line in final if line.startswith("CMD ")]
    assert "serve" in command and "--no-migrate" in command
    assert "ENV DATA_DIR=/data" in final


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_runs_a_one_off_migration_before_the_api_and_the_worker() -> None:
    services = compose()["services"]
    assert set(services) == {"migrate", "api", "worker", "postgres", "redis"}
    assert services["migrate"]["command"] == ["python", "-m", "app", "migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
    assert services["api"]["command"][:4] == ["python", "-m", "app", "serve"]
    assert "--no-migrate" in services["api"]["command"]
    assert services["worker"]["command"] == ["python", "-m", "app", "worker"]


def test_compose_wires_the_database_redis_and_the_public_address() -> None:
    services = compose()["services"]
    for name in ("migrate", "api", "worker"):
        environment = services[name]["environment"]
        assert environment["DATABASE_URL"].startswith("postgresql+asyncpg://payments:")
        assert environment["DATABASE_URL"].endswith("@postgres:5432/payments")
        assert environment["REDIS_URL"] == "redis://redis:6379/0"
        assert environment["PUBLIC_BASE_URL"] == "${PUBLIC_BASE_URL:-http://127.0.0.1:${API_PORT:-8000}}"
        assert environment["PORT"] == "${API_PORT:-8000}"
        assert environment["WORKER_IN_PROCESS"] == "false"
    assert services["api"]["ports"] == ["${API_PORT:-8000}:${API_PORT:-8000}"]
    assert "healthcheck" in services["postgres"] and "healthcheck" in services["redis"]
