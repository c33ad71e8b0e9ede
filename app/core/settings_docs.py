"""The settings' documentation, made from `Settings` itself so that it cannot drift from the code.

`env_example()` is the body of `.env.example` (`python -m app settings env`); `markdown_page()` is
docs/configuration.md (`python -m app settings markdown`). Each setting's text is its field's
`description`; its default comes from the field, and the values it takes from its type and bounds
unless the field's `json_schema_extra` names them (`allowed`). A setting without a description, or
a text setting without `allowed`, is a `SettingsDocError`: the documentation is never guessed.
"""

from __future__ import annotations

import textwrap
import types
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from app.core.config import Settings

ENV_LINE_WIDTH = 118

ENV_HEADER = """\
# Payment service settings. Copy to `.env` (read from the working directory) or set
# them in the environment; environment variables win over `.env`. Active lines show
# the default; commented lines are secrets or optional values (placeholders), so a
# verbatim copy runs exactly like no configuration: SQLite plus the built-in
# Paystack sandbox.
#
# Live mode (PAYMENT_GATEWAY_MODE=live) refuses to start with development secrets:
# it needs an sk_live_ PAYSTACK_SECRET_KEY and ENCRYPTION_KEYS without the development
# key. Test and live mode need (when JWT_ALGORITHM=HS256) a JWT_SECRET of at least 32
# bytes other than the development default. Sandbox and test mode refuse sk_live_ keys.
#
# Generated from app/core/config.py by `python -m app settings env`: edit the settings'
# descriptions there, not this file.
"""

MARKDOWN_HEADER = """\
# Configuration

Settings come from environment variables (the upper-cased names below) or a `.env` file in the
working directory; environment variables win. `.env.example` lists every setting with its default.
Live mode refuses to start with the development secrets; test and live mode need an HS256
`JWT_SECRET` of at least 32 bytes other than the development one; sandbox and test mode refuse an
`sk_live_` key (the sandbox's checkout page lets anyone settle their own charge). Settings that are
no longer used (such as `PAYSTACK_PUBLIC_KEY`) are ignored wherever they are still set.

Generated from app/core/config.py by `python -m app settings markdown`: edit the settings'
descriptions there, not this file.
"""


class SettingsDocError(ValueError):
    """A setting lacks what its documentation needs."""


@dataclass(frozen=True, slots=True)
class SettingDoc:
    env_name: str
    section: str
    description: str
    allowed: str
    # What `.env` says for the default: None for settings left commented out (secrets, unset by default).
    env_default: str | None
    # The line shown commented out when `env_default` is None.
    example: str | None
    default_for_people: str


def describe(settings_class: type[BaseSettings] = Settings) -> list[SettingDoc]:
    """Every setting of `settings_class`, in declaration order."""
    docs = []
    section = ""
    for name, field in settings_class.model_fields.items():
        extra = _extra(field)
        section = extra.get("section", section)
        if not section:
            raise SettingsDocError(f"{name}: the first setting must name its section")
        if not field.description:
            raise SettingsDocError(f"{name}: add Field(description=...)")
        env_default = _env_value(field.default)
        example = extra.get("example")
        if env_default is None and example is None:
            raise SettingsDocError(f"{name}: a setting left commented out needs an `example`")
        docs.append(
            SettingDoc(
                env_name=name.upper(),
                section=section,
                description=" ".join(field.description.split()),
                allowed=extra.get("allowed") or _allowed_from_type(name, field),
                env_default=env_default,
                example=example if env_default is None else None,
                default_for_people=_default_for_people(field.default),
            )
        )
    return docs


def env_example(settings_class: type[BaseSettings] = Settings) -> str:
    """The whole `.env.example`."""
    lines = [ENV_HEADER.rstrip("\n")]
    section = None
    for doc in describe(settings_class):
        if doc.section != section:
            section = doc.section
            lines += ["", f"# --- {section} " + "-" * max(3, 75 - len(section))]
        comment = f"{doc.description} Default: {doc.default_for_people}. Allowed: {_sentence(doc.allowed)}"
        lines += textwrap.wrap(comment, ENV_LINE_WIDTH, initial_indent="# ", subsequent_indent="# ",
                               break_long_words=False, break_on_hyphens=False)
        if doc.env_default is None:
            lines.append(f"# {doc.env_name}={doc.example}")
        else:
            lines.append(f"{doc.env_name}={doc.env_default}")
    return "\n".join(lines) + "\n"


def markdown_table(settings_class: type[BaseSettings] = Settings) -> str:
    """One row per setting: name, default, description (with the values it takes)."""
    rows = ["| setting | default | description |", "| --- | --- | --- |"]
    for doc in describe(settings_class):
        description = f"{doc.description} Allowed: {_sentence(doc.allowed)}"
        rows.append(f"| `{doc.env_name}` | {_cell(doc.default_for_people)} | {_cell(description)} |")
    return "\n".join(rows) + "\n"


def markdown_page(settings_class: type[BaseSettings] = Settings) -> str:
    """The whole docs/configuration.md."""
    return MARKDOWN_HEADER + "\n" + markdown_table(settings_class)


def _extra(field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _env_value(default: object) -> str | None:
    if default is None or isinstance(default, SecretStr):
        return None
    if isinstance(default, bool):
        return "true" if default else "false"
    return str(default)


def _default_for_people(default: object) -> str:
    if default is None:
        return "unset"
    if isinstance(default, SecretStr):
        return "a development value"
    if default == "":
        return "empty"
    return f"`{_env_value(default)}`"


def _allowed_from_type(name: str, field: FieldInfo) -> str:
    annotation = _without_none(field.annotation)
    if get_origin(annotation) is Literal:
        return " | ".join(str(choice) for choice in get_args(annotation))
    if annotation is bool:
        return "true | false"
    kinds = {int: "an integer", float: "a number", Decimal: "a decimal"}
    if annotation not in kinds:
        raise SettingsDocError(f"{name}: say which values it takes (json_schema_extra={{'allowed': ...}})")
    return kinds[annotation] + _bounds(field, integer=annotation is int)


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        [kept] = [arg for arg in get_args(annotation) if arg is not type(None)]
        return kept
    return annotation


def _bounds(field: FieldInfo, *, integer: bool) -> str:
    bounds: dict[str, object] = {}
    for constraint in field.metadata:
        for kind, attribute in ((annotated_types.Gt, "gt"), (annotated_types.Ge, "ge"),
                                (annotated_types.Lt, "lt"), (annotated_types.Le, "le")):
            if isinstance(constraint, kind):
                bounds[attribute] = getattr(constraint, attribute)
    if integer and "ge" in bounds and "le" in bounds and len(bounds) == 2:
        return f" {bounds['ge']}..{bounds['le']}"
    symbols = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return " and".join(f" {symbols[kind]} {value}" for kind, value in bounds.items())


def _sentence(text: str) -> str:
    return text if text.endswith(".") else text + "."


def _cell(text: str) -> str:
    """Markdown table cell text: a bar would end the cell."""
    return text.replace("|", "\\|")
