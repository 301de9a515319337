"""Errors over HTTP, in one place: the status and code of every exception, and the one JSON shape.

Every error answer is ``{"error": {"code": "...", "message": "..."}}``, the
framework's own errors (validation, unknown route, wrong method) included.
Input errors are 4xx, never 5xx; a failing backend gives 503, a full one
(``StoreFullError``, like a used-up quota) 507.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import (
    BotMemoryError,
    InvalidExpiryError,
    InvalidInputError,
    InvalidKeyError,
    InvalidPathError,
    KeyNotFoundError,
    LegalHoldError,
    QuotaExceededError,
    StoreError,
    StoreFullError,
    StoreTimeoutError,
    StoreUnavailableError,
    ValueTooLargeError,
    ValueTypeError,
    VersionConflictError,
)

__all__ = [
    "ApiError",
    "BodyTooLargeError",
    "ErrorBody",
    "error_response",
    "error_responses",
    "install_error_handlers",
    "status_of",
]

log = logging.getLogger("botmemory.http")

#: The library's errors, most specific first: (class, HTTP status, code).
_MAPPING: Final[tuple[tuple[type[BaseException], int, str], ...]] = (
    (ValueTooLargeError, 413, "value_too_large"),
    (ValueTypeError, 422, "invalid_value"),
    (InvalidKeyError, 400, "invalid_key"),
    (InvalidPathError, 400, "invalid_path"),
    (InvalidExpiryError, 400, "invalid_expiry"),
    (InvalidInputError, 400, "invalid_input"),
    (KeyNotFoundError, 404, "not_found"),
    (VersionConflictError, 409, "version_conflict"),
    (LegalHoldError, 409, "legal_hold"),
    (QuotaExceededError, 507, "quota_exceeded"),
    (StoreFullError, 507, "store_full"),  # no space left: writes fail, reads work (README, StoreFullError)
    (StoreTimeoutError, 503, "store_timeout"),
    (StoreUnavailableError, 503, "store_unavailable"),
    (StoreError, 503, "store_error"),
)

_CODES_BY_STATUS: Final = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    411: "length_required",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    431: "headers_too_large",
    503: "unavailable",
}

_DESCRIPTIONS: Final = {
    400: "Bad input (key, path, expiry, cursor, JSON, encoding)",
    401: "Missing, malformed, unknown or revoked token",
    403: "The token may not do this",
    404: "No such bot, key, variable or user, or not reachable with this token",
    409: "Version conflict (if_version) or legal hold",
    413: "Body or value too large",
    415: "The body is not application/json",
    422: "The body or a parameter does not match its schema",
    429: "Too many failed sign-ins from this address",
    503: "The store is unavailable or did not answer in time",
    507: "The bot's key quota is used up, or the store has no space left",
}


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """The one shape of every error answer."""

    error: ErrorDetail


class BodyTooLargeError(Exception):
    """The request body passed the limit while it streamed in (``middleware.RequestGuard``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


class ApiError(Exception):
    """An error the HTTP layer raises itself (auth, bad requests the library never sees)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def status_of(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and error code for a library exception."""
    for cls, status, code in _MAPPING:
        if isinstance(exc, cls):
            return status, code
    return 500, "internal_error"


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """A response in the one error shape."""
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting these error statuses with ``ErrorBody``."""
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS.get(s, "Error")} for s in statuses}


def _validation_message(errors: Any) -> str:
    parts = []
    for err in list(errors)[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception to the one error shape (FastAPI's defaults included)."""

    async def api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def library_error(_request: Request, exc: Exception) -> Response:
        status, code = status_of(exc)
        if status >= 500:
            log.warning("store error: %s: %s", type(exc).__name__, exc)
        headers = {"Retry-After": "1"} if status == 503 else None
        return error_response(status, code, str(exc) or type(exc).__name__, headers)

    async def validation_error(_request: Request, exc: Exception) -> Response:
        errors = exc.errors() if isinstance(exc, RequestValidationError | ValidationError) else []
        return error_response(422, "validation_error", _validation_message(errors))

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _CODES_BY_STATUS.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, dict(exc.headers or {}) or None)

    async def body_too_large(_request: Request, exc: Exception) -> Response:
        return error_response(413, "body_too_large", str(exc), {"Connection": "close"})

    async def internal_error(_request: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        return error_response(500, "internal_error", "internal error")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(BotMemoryError, library_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(BodyTooLargeError, body_too_large)
    app.add_exception_handler(Exception, internal_error)
