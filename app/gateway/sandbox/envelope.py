"""Paystack's response envelopes, success and error.

The sandbox renders its own errors instead of raising HTTPException: the host app
turns HTTPException and validation errors into its own `{"error": ...}` shape,
and the service's Paystack client must see Paystack's shape here.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import JSONResponse

ErrorType = Literal["api_error", "validation_error", "processor_error"]
DEFAULT_NEXT_STEP = "Check the request parameters and try again"


class PaystackError(Exception):
    """A request Paystack would refuse; rendered as its error envelope."""

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        error_type: ErrorType = "validation_error",
        code: str = "invalid_params",
        next_step: str = DEFAULT_NEXT_STEP,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.error_type = error_type
        self.code = code
        self.next_step = next_step
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {
            "status": False,
            "message": self.message,
            "type": self.error_type,
            "code": self.code,
            "meta": {"nextStep": self.next_step},
        }
        return JSONResponse(body, status_code=self.status_code, headers=self.headers)


def invalid(message: str, *, code: str = "invalid_params", next_step: str = DEFAULT_NEXT_STEP) -> PaystackError:
    return PaystackError(400, message, code=code, next_step=next_step)


def not_found(message: str) -> PaystackError:
    return PaystackError(
        404,
        message,
        code="not_found",
        next_step="Ensure the identifier belongs to an object on this integration",
    )


def ok(message: str, data: Any, *, status_code: int = 200, meta: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"status": True, "message": message, "data": data}
    if meta is not None:
        body["meta"] = meta
    return JSONResponse(body, status_code=status_code)
