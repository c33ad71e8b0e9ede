"""The whole OpenAPI schema, as a client generator and a person read it: each test walks every operation or every
model and names each one that lacks a property, with what to add (app/openapi.py completes the schema from the
routes' role dependencies, their NOTES entry in app/apidocs.py and their models)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from app.apidocs import ANYONE, PAYSTACK, Operation, error_codes, operations
from app.main import app as served_app
from app.openapi import BEARER, ERROR, ERROR_REF, PARAMETERS

SCHEMA: dict[str, Any] = served_app.openapi()
OPERATIONS: list[Operation] = operations(served_app, SCHEMA)
COMPONENTS: dict[str, Any] = SCHEMA["components"]
# Properties that hold money or a percentage: decimal strings with a pattern, never numbers.
MONEY_NAME = re.compile(r"(^|_)(amount|price|fee|fees|balance|deposited|released|refunded|held|frozen|available|"
                        r"remaining|distributed|collected|paid_out|owed|receives|percentage)$")
# Fields whose values the service restricts: an enum or a pattern in the schema.
RESTRICTED_NAME = re.compile(r"^(status|currency|period|type|payment_type|decision|outcome|payout_status)$")
# Restricted-looking fields whose values come from the gateway and grow without notice (a client must take any).
OPEN_VALUES = {("BankOut", "type")}
# Answers whose body is not the error envelope, by design.
NOT_ENVELOPE = {("GET", "/readyz", "503")}


def label(operation: Operation) -> str:
    return f"{operation.method} {operation.path}"


def resolve(item: dict[str, Any]) -> dict[str, Any]:
    ref = item.get("$ref")
    if not ref:
        return item
    found: Any = SCHEMA
    for part in ref.removeprefix("#/").split("/"):
        found = found[part]
    return found


def parameters(operation: Operation) -> list[dict[str, Any]]:
    return [resolve(parameter) for parameter in operation.spec.get("parameters", [])]


def answer_schema(operation: Operation) -> dict[str, Any]:
    success = next(code for code in operation.spec["responses"] if code.startswith("2"))
    content = operation.spec["responses"][success].get("content", {}).get("application/json", {})
    return resolve(content.get("schema", {}))


def expected_error_statuses(operation: Operation) -> set[str]:
    """What any route of its kind can answer, from the route itself (not from the schema)."""
    expected = {str(error.status_code) for error in operation.notes.errors}
    if operation.authenticated:
        expected.add("401")
    if operation.role in ("admin", "admin or service"):
        expected.add("403")
    if operation.spec.get("parameters") or "requestBody" in operation.spec:
        expected.add("422")
    if "requestBody" in operation.spec and operation.role != PAYSTACK:
        expected.add("413")
    if operation.rate_limit:
        expected.add("429")
    if operation.idempotent:
        expected |= {"409", "422"}
    return expected


def walk(value: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(value, dict):
        yield path, value
        for key, item in value.items():
            yield from walk(item, f"{path}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, f"{path}/{index}")


def string_branches(field: dict[str, Any]) -> list[dict[str, Any]]:
    options = [resolve(option) for option in field.get("anyOf", [field])]
    return [option for option in options if option.get("type") == "string"]


def properties() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for model_name, model in COMPONENTS["schemas"].items():
        for name, field in model.get("properties", {}).items():
            yield model_name, name, field


def test_every_operation_has_a_summary_and_a_description_naming_who_may_call() -> None:
    lacking = [f"{label(o)}: summary and description (who may call) come from its NOTES entry in app/apidocs.py"
               for o in OPERATIONS
               if not o.spec.get("summary") or f"**Who may call:** {o.callers}." not in o.spec.get("description", "")]

    assert not lacking, "\n".join(lacking)


def test_authenticated_operations_and_only_they_require_the_bearer_scheme() -> None:
    scheme = COMPONENTS["securitySchemes"][BEARER]
    wrong = [f"{label(o)}: security {o.spec.get('security')} for a caller who is {o.role}" for o in OPERATIONS
             if (o.spec.get("security") == [{BEARER: []}]) != (o.role not in (ANYONE, PAYSTACK))]

    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    assert not wrong, "\n".join(wrong)
    assert "security" not in SCHEMA  # public operations need none


def test_the_paystack_webhook_declares_its_signature_instead() -> None:
    webhooks = [o for o in OPERATIONS if o.role == PAYSTACK]
    signed = [o for o in webhooks if any(p["name"] == "x-paystack-signature" and p["in"] == "header" and p["required"]
                                         for p in parameters(o))]

    assert webhooks and signed == webhooks


def test_every_error_an_operation_can_answer_is_declared_with_the_envelope() -> None:
    lacking = []
    for operation in OPERATIONS:
        declared = {code for code in operation.spec["responses"] if code[0] in "45"}
        missing = expected_error_statuses(operation) - declared
        if missing:
            lacking.append(f"{label(operation)}: no {sorted(missing)} answer (domain errors: `errors=` of its NOTES "
                           "entry in app/apidocs.py)")
        for code in sorted(declared):
            if (operation.method, operation.path, code) in NOT_ENVELOPE:
                continue
            content = operation.spec["responses"][code].get("content", {})
            if list(content) != ["application/json"] or content["application/json"]["schema"] != {"$ref": ERROR_REF}:
                lacking.append(f"{label(operation)}: its {code} answer is not the {ERROR} envelope")

    assert not lacking, "\n".join(lacking)


def test_the_error_envelope_is_one_model_with_every_code_as_an_enum() -> None:
    body = resolve(COMPONENTS["schemas"][ERROR]["properties"]["error"])
    enum = body["properties"]["code"]["enum"]
    stray = [path for path, node in walk(SCHEMA, "#") if "HTTPValidationError" in str(node.get("$ref", ""))]
    status_of = dict(error_codes())
    examples = [(code, example["value"]["error"]["code"]) for o in OPERATIONS
                for code, response in o.spec["responses"].items() if code[0] in "45"
                for example in response.get("content", {}).get("application/json", {}).get("examples", {}).values()]

    assert sorted(enum) == sorted(status_of)
    assert set(body["required"]) == {"code", "message", "details"}
    assert "HTTPValidationError" not in COMPONENTS["schemas"] and not stray
    assert examples and all(str(status_of[example]) == code for code, example in examples)


def test_every_request_body_has_an_example() -> None:
    lacking = [f"{label(o)}: no example on its request body (json_schema_extra={{'examples': [...]}} on the model)"
               for o in OPERATIONS if "requestBody" in o.spec
               for media in o.spec["requestBody"]["content"].values() if "example" not in media]

    assert not lacking, "\n".join(lacking)


def test_no_value_is_typed_as_a_json_number() -> None:
    numbers = [path for path, node in walk(SCHEMA, "#") if node.get("type") == "number"]

    assert not numbers, "amounts and percentages are decimal strings:\n" + "\n".join(numbers)


def test_amounts_and_percentages_are_strings_with_a_decimal_pattern() -> None:
    wrong = [f"{model}.{name}" for model, name, field in properties() if MONEY_NAME.search(name)
             and field.get("type") != "integer"  # a count, such as `shares_available`
             and (not string_branches(field) or not all(option.get("pattern") for option in string_branches(field)))]

    assert not wrong, "use Amount, Money, AmountInput or a Percentage type (app/core/schemas.py):\n" + "\n".join(wrong)


def test_restricted_fields_show_their_enum_or_pattern() -> None:
    wrong = [f"{model}.{name}" for model, name, field in properties() if RESTRICTED_NAME.match(name)
             and (model, name) not in OPEN_VALUES
             and not all("enum" in option or "pattern" in option or "const" in option
                         for option in string_branches(field))]

    assert not wrong, "use one_of(...), CurrencyCode, CurrencyInput or Period (app/core/schemas.py):\n" + \
        "\n".join(wrong)


def test_every_model_field_has_a_description() -> None:
    lacking = [f"{model}.{name}" for model, name, field in properties() if not field.get("description")]

    assert not lacking, "Field(description=...) on these (or a shared meaning in FIELD_DESCRIPTIONS, " \
        "app/openapi.py):\n" + "\n".join(lacking)


def test_idempotency_key_and_pagination_are_described_once_and_referenced() -> None:
    inline = [f"{label(o)}: inline {p['name']}" for o in OPERATIONS for p in o.spec.get("parameters", [])
              if "$ref" not in p and (p["name"], p["in"]) in {(s["name"], s["in"]) for s in PARAMETERS.values()}]
    idempotent = [o for o in OPERATIONS if o.idempotent]
    paged = [o for o in OPERATIONS if "next_cursor" in answer_schema(o).get("properties", {})
             and {"$ref": "#/components/parameters/Cursor"} in o.spec.get("parameters", [])]

    assert not inline, "\n".join(inline)
    assert idempotent and all({"$ref": "#/components/parameters/IdempotencyKey"} in o.spec["parameters"]
                              for o in idempotent)
    assert paged
    assert COMPONENTS["parameters"] == PARAMETERS


@pytest.mark.parametrize(("method", "path", "media"), [
    ("GET", "/v1/reports/revenue/monthly", "text/csv"),
    ("GET", "/v1/apps/{app_id}/escrow/statement", "text/csv"),
    ("GET", "/metrics", "text/plain"),
])
def test_non_json_answers_declare_their_content_type(method: str, path: str, media: str) -> None:
    answer = SCHEMA["paths"][path][method.lower()]["responses"]["200"]

    assert any(declared.split(";")[0] == media for declared in answer["content"])


def test_operation_ids_are_the_endpoints_names() -> None:
    ids = [o.spec["operationId"] for o in OPERATIONS]

    assert len(set(ids)) == len(ids)
    assert all(o.spec["operationId"] == o.route.endpoint.__name__ for o in OPERATIONS)


def test_every_tag_is_described() -> None:
    tags = {o.tag for o in OPERATIONS}
    described = {tag["name"] for tag in SCHEMA["tags"] if tag.get("description")}

    assert tags <= described, f"describe these in TAGS (app/openapi.py): {sorted(tags - described)}"
