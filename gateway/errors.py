"""Every error the API returns is JSON ``{"error": code, "detail": words, "field": name?}``.

Routes raise :class:`ApiError` (or let domain/adapter errors through); the handlers
here, registered once on the app, turn them into responses.
"""

from __future__ import annotations

from typing import Any

import nats.errors
import nats.js.errors
import psycopg
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from adapters.billing import errors as billing
from adapters.channels import errors as channel
from adapters.nats.errors import ConcurrencyConflict
from domain.errors import InvalidToken

log = structlog.get_logger()


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,  # more members of the answer's body
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field
        self.headers = headers or {}
        self.extra = extra or {}


def _body(error: str, detail: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": error, "detail": detail}
    if field:
        body["field"] = field
    return body


def api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    body = _body(exc.error, exc.detail, exc.field) | exc.extra
    return Response(body, status_code=exc.status, headers=exc.headers)


def validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    first = extra[0] if extra and isinstance(extra[0], dict) else {}
    field = first.get("key") or None
    detail = first.get("message") or exc.detail
    return Response(_body("invalid_request", f"{detail}", field), status_code=400)


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    codes = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
    error = codes.get(exc.status_code, "http_error")
    return Response(_body(error, exc.detail), status_code=exc.status_code)


def invalid_token(request: Request[Any, Any, Any], exc: InvalidToken) -> Response[Any]:
    return Response(_body("invalid_id", str(exc), exc.field), status_code=400)


def conflict(request: Request[Any, Any, Any], exc: ConcurrencyConflict) -> Response[Any]:
    return Response(_body("conflict", "Someone else changed this at the same time; retry."), status_code=409)


# Each channel error as an answer: (status, code); a provider that cannot be asked is retried.
CHANNEL_ERRORS: dict[type[channel.ChannelError], tuple[int, str]] = {
    channel.ChannelError: (400, "invalid_request"),
    channel.TokenRejected: (400, "token_rejected"),
    channel.TokenRevoked: (403, "token_rejected"),
    channel.ProviderUnreachable: (503, "provider_unavailable"),
    channel.InstallRejected: (400, "install_rejected"),
    channel.BadSignature: (401, "bad_signature"),
    channel.SubscriptionRefused: (403, "verify_token_mismatch"),
    channel.BadRequest: (400, "invalid_request"),
    channel.WrongWorkspace: (403, "wrong_workspace"),
    channel.NotConnected: (404, "not_found"),
    channel.NotConfigured: (503, "not_configured"),
    channel.InstallStateInvalid: (400, "invalid_state"),
    channel.WrongBrowser: (403, "wrong_browser"),
    channel.AlreadyConnected: (409, "already_connected"),
}


def channel_error(request: Request[Any, Any, Any], exc: channel.ChannelError) -> Response[Any]:
    status, code = next(CHANNEL_ERRORS[c] for c in type(exc).__mro__ if c in CHANNEL_ERRORS)
    headers = {"Retry-After": "10"} if isinstance(exc, channel.ProviderUnreachable) else {}
    return Response(_body(exc.code or code, str(exc), exc.field), status_code=status, headers=headers)


# Each billing error as an answer: (status, code); Stripe out of reach is retried.
BILLING_ERRORS: dict[type[billing.BillingError], tuple[int, str]] = {
    billing.BillingError: (502, "billing_error"),
    billing.BillingUnavailable: (503, "billing_unavailable"),
    billing.BadStripeSignature: (400, "bad_signature"),
    billing.BadStripeEvent: (400, "invalid_request"),
}


def billing_error(request: Request[Any, Any, Any], exc: billing.BillingError) -> Response[Any]:
    status, code = next(BILLING_ERRORS[c] for c in type(exc).__mro__ if c in BILLING_ERRORS)
    if status >= 500:
        log.warning("billing_failed", path=request.url.path, error=str(exc))
    headers = {"Retry-After": "10"} if isinstance(exc, billing.BillingUnavailable) else {}
    return Response(_body(code, str(exc)), status_code=status, headers=headers)


def too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    # Only a body nested thousands of levels deep gets here (JSON decoding recurses).
    return Response(_body("invalid_request", "The JSON body is nested too deeply."), status_code=400)


def not_utf8(request: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[Any]:
    return Response(_body("invalid_request", "The body is not valid UTF-8 text."), status_code=400)


def unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # NATS or PostgreSQL is restarting, or a stream is electing a leader: nothing was
    # half-written (an append is acked or not; a transaction commits or not), so retry.
    log.warning("backend_unavailable", path=request.url.path, error=repr(exc))
    return Response(
        _body("unavailable", "The service is briefly unavailable (a restart or failover); retry shortly."),
        status_code=503,
        headers={"Retry-After": "1"},
    )


def unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("request_failed", path=request.url.path)
    return Response(_body("internal_error", "Something went wrong on our side."), status_code=500)


# What a NATS or PostgreSQL outage raises in a request (psycopg_pool.PoolTimeout is an
# OperationalError; nats.errors.TimeoutError and NoStreamResponseError are nats errors).
BACKEND_OUTAGES: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    nats.errors.TimeoutError,
    nats.errors.NoServersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoRespondersError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
)

HANDLERS: dict[type[Exception] | int, Any] = {
    ApiError: api_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    InvalidToken: invalid_token,
    ConcurrencyConflict: conflict,
    channel.ChannelError: channel_error,
    billing.BillingError: billing_error,
    RecursionError: too_deep,
    UnicodeDecodeError: not_utf8,
    **dict.fromkeys(BACKEND_OUTAGES, unavailable),
    Exception: unexpected,
}
