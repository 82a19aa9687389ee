"""The SDK's exceptions. Each says what went wrong and what to do about it.

Every class derives from tritonclient's InferenceServerException, so code
written for tritonclient that catches it keeps working; `status()` is the
HTTP status ("401") or gRPC code ("StatusCode.PERMISSION_DENIED") the
gateway answered, as tritonclient reports it.
"""

from __future__ import annotations

from tritonclient.utils import InferenceServerException


class HelixError(InferenceServerException):
    """Base of the SDK's errors."""

    def __init__(self, message: str, status: str | None = None, debug_details: str | None = None) -> None:
        super().__init__(msg=message, status=status, debug_details=debug_details)

    def __str__(self) -> str:
        return str(self.message())


class ConfigurationError(HelixError, ValueError):
    """Something the SDK needs was not given (an address, a credential, a
    CA file): the message names the argument and the HELIX_* variable."""


class AuthenticationError(HelixError):
    """The credential was refused (HTTP 401, gRPC UNAUTHENTICATED), or the
    token endpoint refused the client (wrong id or secret). Not retried."""


class PermissionDeniedError(HelixError):
    """The credential is valid but may not do this (HTTP 403, gRPC
    PERMISSION_DENIED): a scope is missing or the model is not in the
    client's model list. Not retried. `scope` is the scope the call needs."""

    def __init__(self, message: str, status: str | None = None, scope: str = "") -> None:
        super().__init__(message, status)
        self.scope = scope


class RateLimitedError(HelixError):
    """Still over the plan's limit (HTTP 429, gRPC RESOURCE_EXHAUSTED) when
    the retries ran out. `reset` is the gateway's x-ratelimit-reset (seconds),
    `limit` its x-ratelimit-limit."""

    def __init__(self, message: str, status: str | None = None, reset: float | None = None, limit: str = "") -> None:
        super().__init__(message, status)
        self.reset = reset
        self.limit = limit


class UnavailableError(HelixError):
    """The service stayed unavailable (HTTP 503, gRPC UNAVAILABLE, the
    network) while the retries lasted."""


class APIError(HelixError):
    """Another error answer of the REST API (catalogue, usage): `code` is
    the API's error code (e.g. `not_found`, `invalid_request`)."""

    def __init__(self, message: str, status: str | None = None, code: str = "") -> None:
        super().__init__(message, status)
        self.code = code


def scope_hint(scope: str) -> str:
    return f"the call needs scope {scope}" if scope else "the credential may not make this call"


def denied(what: str, scope: str, status: str, gateway_says: str) -> PermissionDeniedError:
    """The 403 / PERMISSION_DENIED error: which scope is missing, as far as
    the gateway says (`insufficient_scope`: the scope, or the model not in
    the client's model list) and what to do."""
    msg = (f"{what}: permission denied ({gateway_says or 'forbidden'}): {scope_hint(scope)}, and the model must be "
           "in the client's model list. Ask an administrator to grant it "
           "(helixctl clients update CLIENT_ID --scope ... --model ...), or use a credential that has it.")
    return PermissionDeniedError(msg, status, scope)


def unauthenticated(what: str, status: str, gateway_says: str) -> AuthenticationError:
    return AuthenticationError(
        f"{what}: the gateway refused the credential ({gateway_says or 'invalid_token'}) even after a fresh token: "
        "the client may be disabled or its secret rotated, or the API key revoked or expired. "
        "Check HELIX_CLIENT_ID / HELIX_CLIENT_SECRET (or the API key) with your administrator.", status)
