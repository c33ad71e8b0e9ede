"""The OpenAPI schema as client generators and people read it: FastAPI's schema, completed in one place from the
routes' dependencies and their `NOTES` (app/apidocs.py) with summaries, who may call, the bearer scheme, every
error answer in the one envelope, request examples, the shared parameters and the CSV answers.

A new route gets all of it from its role dependency, its `NOTES` entry and its models' examples and field
descriptions; tests/test_openapi.py says what a route still lacks.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

from fastapi import FastAPI

from app.apidocs import IDEMPOTENCY_HEADER, WHEN, Operation, error_codes, operations, resolved
from app.core.errors import AppError
from app.core.schemas import CURRENCY_SCHEMA

BEARER = "HTTPBearer"
ERROR = "Error"
ERROR_BODY = "ErrorBody"
ERROR_REF = f"#/components/schemas/{ERROR}"
# FastAPI's own 422 answer, which this service never gives: every error is the envelope.
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
CSV = "text/csv"
CURRENCY = "Currency"

# Described once, referenced by every operation that has them. An inline parameter of the same name and shape
# (what `page_params` and `IdempotencyKey` declare) is replaced by its reference.
PARAMETERS: dict[str, dict[str, Any]] = {
    "IdempotencyKey": {
        "name": IDEMPOTENCY_HEADER, "in": "header", "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        "description": "Optional, 1 to 255 printable characters, scoped to the caller. The same key and body replay "
        "the first answer (header `Idempotent-Replayed: true`); the same key with another body is 422 "
        "`IDEMPOTENCY_CONFLICT`; while the first request runs, 409 `IDEMPOTENCY_IN_PROGRESS`.",
        "example": "order-2026-05-0001",
    },
    "Limit": {
        "name": "limit", "in": "query", "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
        "description": "Cursor pagination: at most this many items (1..200, default 50); the answer's `next_cursor` "
        "reads the next page.",
    },
    "Cursor": {
        "name": "cursor", "in": "query", "required": False,
        "schema": {"anyOf": [{"type": "string", "maxLength": 100}, {"type": "null"}]},
        "description": "Cursor pagination: the previous page's `next_cursor`; absent for the first page.",
    },
}
# The keys of an inline parameter's schema that must agree with the shared one before it is replaced.
_SHAPE = ("type", "minimum", "maximum", "default", "maxLength", "minLength")

# The groups of operations, in the order Swagger UI and ReDoc show them.
TAGS: dict[str, str] = {
    "operations": "Liveness, readiness, metrics, and the admins' checks of the books.",
    "apps": "The apps investors buy shares of, with their owner, approvers, currency and share price.",
    "payments": "Payments through Paystack (investments, share transfers, revenue) and their refunds.",
    "webhooks": "Paystack's events, signed with the secret key.",
    "escrow": "Investments held in escrow, milestones, releases to owners and refunds to investors.",
    "disputes": "Investors' disputes and Paystack's chargebacks, which freeze escrowed money.",
    "payouts": "Payout accounts and the transfers that pay owners and shareholders.",
    "shares": "Holdings, the cap table and offers of shares between investors.",
    "distributions": "Revenue shared out to shareholders, and the monthly revenue report.",
    "events": "The service's own signed events: webhook endpoints, their deliveries, and the event lists.",
}

SECURITY_SCHEMES = {
    BEARER: {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "`Authorization: Bearer <JWT>` from the platform's identity service (HS256 with "
        "`JWT_SECRET`, RS256/ES256 with `JWT_PUBLIC_KEY` or an identity provider's `JWT_JWKS_URL`). Claims: "
        "`sub` (the user id), `exp`, `roles` (may hold "
        "`admin` and `service`), `email` (optional). In development `python -m app token --sub USER [--role admin]` "
        "prints one.",
    },
}

# Descriptions of properties that mean the same wherever they appear, for the models' fields that give none.
FIELD_DESCRIPTIONS: dict[str, str] = {
    "id": "The object's id.",
    "app_id": "The app's id.",
    "user_id": "The user's id (the `sub` of their token).",
    "investor_id": "The investor's user id.",
    "owner_id": "The app owner's user id.",
    "currency": "ISO 4217 currency code of the amounts beside it.",
    "created_at": "When it was created (UTC).",
    "updated_at": "When it last changed (UTC).",
    "items": "This page's items.",
    "next_cursor": "The `cursor` that reads the next page; null on the last page.",
    "status": "Its status.",
    "amount": "The amount, a decimal string in major units of `currency`.",
    "reference": "The payment's reference at the gateway.",
    "payment_reference": "The reference of the payment it belongs to.",
    "transaction_id": "The escrow deposit's id.",
    "escrow_transaction_id": "The escrow transaction (refund row) it is recorded as.",
    "shares": "A number of shares.",
    "period": "A month, YYYY-MM.",
    "reason": "Why, in words.",
    "note": "A free-text note.",
    "milestone_id": "The milestone's id.",
    "distribution_id": "The distribution's id.",
    "payout_status": "The status of the payout that pays it; null before one is made.",
}


def install_openapi(app: FastAPI) -> None:
    """`app.openapi()` (and so `/openapi.json`, `/docs`) serves the completed schema."""

    def openapi() -> dict[str, Any]:
        before = app.openapi_schema
        schema = FastAPI.openapi(app)  # FastAPI builds it again when the routes changed
        if schema is not before:
            try:
                complete(app, schema)
            except Exception:
                app.openapi_schema = None
                raise
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(app: FastAPI, schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    schemas.update(error_schemas())
    components["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)  # the schema is a document of its own
    components["parameters"] = copy.deepcopy(PARAMETERS)
    found = operations(app, schema)
    used = list(dict.fromkeys(operation.tag for operation in found))
    schema["tags"] = [{"name": tag, **({"description": TAGS[tag]} if tag in TAGS else {})}
                      for tag in sorted(used, key=lambda tag: list(TAGS).index(tag) if tag in TAGS else len(TAGS))]
    names = [operation.route.endpoint.__name__ for operation in found]
    for operation in found:
        name = operation.route.endpoint.__name__
        _complete_operation(schema, operation, name if names.count(name) == 1 else None)
    for model in schemas.values():
        _describe_fields(model)
    _one_currency_schema(schema)


def _one_currency_schema(schema: dict[str, Any]) -> None:
    """Every currency field refers to one `Currency` schema (one enum in a generated client, not one per field)."""
    components = schema["components"]["schemas"]

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "string" and node.get("enum") == CURRENCY_SCHEMA["enum"]:
                described = {"description": node["description"]} if "description" in node else {}
                node.clear()
                node.update({"$ref": f"#/components/schemas/{CURRENCY}", **described})
                return
            for item in node.values():
                visit(item)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(schema["paths"])
    visit(components)
    components[CURRENCY] = {"title": CURRENCY, **CURRENCY_SCHEMA}


def error_schemas() -> dict[str, dict[str, Any]]:
    """The one error envelope, with every code the service answers as an enum."""
    codes = [code for code, _ in error_codes()]
    return {
        ERROR_BODY: {
            "title": ERROR_BODY, "type": "object", "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "enum": codes, "description": "What went wrong, for programs: stable."},
                "message": {"type": "string", "description": "What went wrong, for people: may change."},
                "details": {"type": "object", "additionalProperties": True,
                            "description": "More about it; for VALIDATION_ERROR, `fields`: a list of "
                            "`{loc, message, type}` naming each invalid part of the request."},
            },
        },
        ERROR: {
            "title": ERROR, "type": "object", "required": ["error"],
            "properties": {"error": {"$ref": f"#/components/schemas/{ERROR_BODY}", "description": "The error."}},
            "description": "Every error the service answers with.",
        },
    }


def description(operation: Operation) -> str:
    parts = [f"{operation.notes.summary}." + (f" {operation.notes.details}" if operation.notes.details else "")]
    parts.append(f"**Who may call:** {operation.callers}.")
    if operation.idempotent:
        parts.append("Honours `Idempotency-Key`.")
    limit = operation.rate_limit
    parts.append(f"**Rate limit:** `{limit}`." if limit else "**Rate limit:** none.")
    return "\n\n".join(parts)


def _complete_operation(schema: dict[str, Any], operation: Operation, operation_id: str | None) -> None:
    spec = operation.spec
    spec["summary"] = operation.notes.summary
    spec["description"] = description(operation)
    if operation_id:
        spec["operationId"] = operation_id
    if operation.authenticated:
        spec["security"] = [{BEARER: []}]
    spec["parameters"] = [_shared(parameter) for parameter in spec.get("parameters", [])]
    if not spec["parameters"]:
        del spec["parameters"]
    responses: dict[str, Any] = spec["responses"]
    responses.pop("422", None)  # FastAPI's HTTPValidationError: replaced by the envelope below
    success = next(code for code in responses if code.startswith("2"))
    for status, when in operation.notes.answers:
        responses.setdefault(str(status), {**copy.deepcopy(responses[success]), "description": when})
    if _offers_csv(schema, spec):
        for code in [code for code in responses if code.startswith("2")]:
            responses[code].setdefault("content", {})[CSV] = {"schema": {"type": "string"}}
    by_status: dict[int, list[type[AppError]]] = defaultdict(list)
    for error in operation.errors:
        by_status[error.status_code].append(error)
    for status, errors in sorted(by_status.items()):
        responses[str(status)] = _error_response(status, errors)
    body = spec.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None and "example" not in body and "examples" not in body:
        examples = resolved(schema, body.get("schema", {})).get("examples")
        if examples:
            body["example"] = examples[0]


def _shared(parameter: dict[str, Any]) -> dict[str, Any]:
    for name, shared in PARAMETERS.items():
        if (parameter.get("name"), parameter.get("in")) != (shared["name"], shared["in"]):
            continue
        if name == "IdempotencyKey" or (all(
                parameter["schema"].get(key) == shared["schema"].get(key) for key in _SHAPE
                if key in shared["schema"]) and _same_cursor(parameter, shared)):
            return {"$ref": f"#/components/parameters/{name}"}
    return parameter


def _same_cursor(parameter: dict[str, Any], shared: dict[str, Any]) -> bool:
    """A cursor parameter is replaced only when it has the shared one's bound."""
    if "anyOf" not in shared["schema"]:
        return True
    options = parameter["schema"].get("anyOf", [])
    bounds = [option.get("maxLength") for option in options if option.get("type") == "string"]
    return bounds == [100]


def _offers_csv(schema: dict[str, Any], spec: dict[str, Any]) -> bool:
    """A `format` query parameter that takes `csv` means the answer may be CSV."""
    for parameter in spec.get("parameters", []):
        parameter = resolved(schema, parameter)
        if parameter.get("name") == "format" and parameter.get("in") == "query":
            return "csv" in parameter.get("schema", {}).get("enum", [])
    return False


def _error_response(status: int, errors: list[type[AppError]]) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": "; ".join(f"`{error.code}`: {WHEN[error.code]}" for error in errors),
        "content": {"application/json": {
            "schema": {"$ref": ERROR_REF},
            "examples": {error.code: {"summary": WHEN[error.code], "value": {
                "error": {"code": error.code, "message": error.default_message, "details": {}}}} for error in errors},
        }},
    }
    if status == 429:
        response["headers"] = {"Retry-After": {"description": "Seconds to wait before trying again.",
                                               "schema": {"type": "integer"}}}
    return response


def _describe_fields(model: dict[str, Any]) -> None:
    for name, field in model.get("properties", {}).items():
        if "description" not in field and name in FIELD_DESCRIPTIONS:
            field["description"] = FIELD_DESCRIPTIONS[name]
