"""The settings are documented once, in app/core/config.py: `.env.example` and docs/configuration.md are what
`python -m app settings env|markdown` makes of it, and must be regenerated when a setting changes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings

from app.__main__ import main
from app.core.config import Settings
from app.core.settings_docs import SettingsDocError, describe, env_example, markdown_page, markdown_table

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / ".env.example"
CONFIGURATION_DOC = ROOT / "docs" / "configuration.md"
REGENERATE = (
    "regenerate: python -m app settings env > .env.example && "
    "python -m app settings markdown > docs/configuration.md"
)
ENV_NAMES = [name.upper() for name in Settings.model_fields]


@pytest.fixture
def no_settings_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_every_setting_has_a_description() -> None:
    undocumented = [name for name, field in Settings.model_fields.items() if not (field.description or "").strip()]

    assert undocumented == []


@pytest.mark.parametrize("name", ENV_NAMES)
def test_env_example_lists_the_setting(name: str) -> None:
    assert re.search(rf"^(# )?{name}=", ENV_EXAMPLE.read_text(), re.MULTILINE), f"{name} missing; {REGENERATE}"


@pytest.mark.parametrize("name", ENV_NAMES)
def test_configuration_doc_has_a_row_for_the_setting(name: str) -> None:
    assert f"| `{name}` |" in CONFIGURATION_DOC.read_text(), f"{name} missing; {REGENERATE}"


def test_env_example_is_what_the_generator_makes() -> None:
    assert ENV_EXAMPLE.read_text() == env_example(), REGENERATE


def test_configuration_doc_is_what_the_generator_makes() -> None:
    assert CONFIGURATION_DOC.read_text() == markdown_page(), REGENERATE


def test_a_verbatim_copy_of_env_example_runs_like_no_configuration(no_settings_in_environment: None) -> None:
    assert Settings(_env_file=ENV_EXAMPLE) == Settings(_env_file=None)


def test_an_env_file_that_still_sets_the_retired_public_key_loads(
    tmp_path: Path, no_settings_in_environment: None
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PAYSTACK_PUBLIC_KEY=pk_test_sandbox\nLOG_LEVEL=DEBUG\n")

    settings = Settings(_env_file=env_file)

    assert settings.log_level == "DEBUG"
    assert not hasattr(settings, "paystack_public_key")


@pytest.mark.parametrize(("format_", "expected"), [("env", env_example), ("markdown", markdown_page)])
def test_the_command_prints_the_generated_text(
    format_: str, expected: object, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")  # the documentation shows defaults, not this environment's values

    assert main(["settings", format_]) == 0

    assert callable(expected)
    assert capsys.readouterr().out == expected()


def test_documented_defaults_and_bounds_come_from_the_fields() -> None:
    class Example(BaseSettings):
        retries: int = Field(default=3, ge=0, le=10, description="Retries.", json_schema_extra={"section": "Gateway"})
        timeout: float = Field(default=0.5, gt=0, le=1, description="Timeout.")
        enabled: bool = Field(default=False, description="Switch.")
        address: str | None = Field(
            default=None, description="Address.", json_schema_extra={"allowed": "a URL", "example": "http://x"}
        )

    text = env_example(Example)

    assert "# --- Gateway " in text
    assert "# Retries. Default: `3`. Allowed: an integer 0..10.\nRETRIES=3\n" in text
    assert "# Timeout. Default: `0.5`. Allowed: a number > 0 and <= 1.\nTIMEOUT=0.5\n" in text
    assert "# Switch. Default: `false`. Allowed: true | false.\nENABLED=false\n" in text
    assert "# Address. Default: unset. Allowed: a URL.\n# ADDRESS=http://x\n" in text
    assert "| `ENABLED` | `false` | Switch. Allowed: true \\| false. |" in markdown_table(Example)


def test_a_setting_without_a_description_is_refused() -> None:
    class Example(BaseSettings):
        retries: int = Field(default=3, json_schema_extra={"section": "Gateway"})

    with pytest.raises(SettingsDocError, match="retries"):
        describe(Example)


def test_a_text_setting_must_say_which_values_it_takes() -> None:
    class Example(BaseSettings):
        mode: str = Field(default="x", description="Mode.", json_schema_extra={"section": "Gateway"})

    with pytest.raises(SettingsDocError, match="mode"):
        describe(Example)


def test_a_setting_left_commented_out_needs_an_example() -> None:
    class Example(BaseSettings):
        address: int | None = Field(default=None, description="Port.", json_schema_extra={"section": "Gateway"})

    with pytest.raises(SettingsDocError, match="address"):
        describe(Example)
