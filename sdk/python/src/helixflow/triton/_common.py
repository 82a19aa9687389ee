"""What the four wrapped InferenceServerClients share: where the gateway is,
the credential plugin, the scope a call needs, and the errors they raise.

How the wrapping works (one layer per protocol, below tritonclient's own
code, so every method of tritonclient's client gets it):
- the credential goes in through tritonclient's plugin mechanism
  (`register_plugin`): tritonclient calls it before every request, streams
  and `async_infer` included, and it sets `authorization` (or `x-api-key`)
  from the credential, whose token is fetched again before it expires;
- retries: gRPC wraps the stub's unary calls (the RpcError carries the
  status and the trailers with x-ratelimit-reset); HTTP wraps `_get` and
  `_post`, which see the status and headers before tritonclient turns the
  answer into an exception. A 401 is sent once more with a fresh token.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from tritonclient._plugin import InferenceServerClientPlugin

from ..credentials import Credentials
from ..errors import ConfigurationError, HelixError, RateLimitedError, UnavailableError, denied, unauthenticated
from ..retry import RATE_LIMITED, Attempts, reset_seconds

AUTH_HEADERS = ("authorization", "x-api-key")


class SafeDel:
    """Mixed in before tritonclient's client: a constructor that raised (bad
    configuration) leaves a half-made client, which tritonclient's __del__
    would trip over."""

    def __del__(self) -> None:
        try:
            super().__del__()  # type: ignore[misc]
        except AttributeError:
            pass


class CredentialPlugin(InferenceServerClientPlugin):
    """tritonclient's plugin that puts the credential on every request."""

    def __init__(self, credentials: Credentials, nowait: bool = False) -> None:
        self.credentials = credentials
        self.nowait = nowait  # asyncio: a valid cached token, refreshed off the loop later

    def __call__(self, request: Any) -> None:
        h = request.headers
        for k in list(h):
            if k.lower() in AUTH_HEADERS:
                del h[k]
        h.update(self.credentials.cached_headers() if self.nowait else self.credentials.headers())


def grpc_url(url: str | None) -> str:
    """host:port for gRPC: url, else HELIX_GRPC_ADDR (a scheme is dropped)."""
    u = url or os.environ.get("HELIX_GRPC_ADDR") or ""
    if not u:
        raise ConfigurationError("the gateway's address is required: pass url='host:port' or set HELIX_GRPC_ADDR "
                                 "(make run's .helix/local.env sets it)")
    return re.sub(r"^(grpcs?|https?)://", "", u).rstrip("/")


def http_url(url: str | None) -> tuple[str, bool | None]:
    """host:port[/path] for tritonclient.http (it takes no scheme): url,
    else HELIX_HTTPS_URL; and True/False when a scheme said https/http."""
    u = url or os.environ.get("HELIX_HTTPS_URL") or ""
    if not u:
        raise ConfigurationError("the gateway's URL is required: pass url='host:port' or set HELIX_HTTPS_URL "
                                 "(make run's .helix/local.env sets it)")
    p = urllib.parse.urlsplit(u if "://" in u else "//" + u)
    tls = {"https": True, "http": False}.get(p.scheme)
    return (p.netloc + p.path).rstrip("/"), tls


def resolve_ca_file(given: str | None) -> str | None:
    """The CA file: given, else HELIX_CA_FILE, else None (the system's roots)."""
    ca = given if given is not None else os.environ.get("HELIX_CA_FILE") or None
    if ca is not None and not os.path.exists(ca):
        raise ConfigurationError(f"CA file {ca!r} (ca_file / HELIX_CA_FILE) does not exist")
    return ca


def scope_for_http(method: str, uri: str) -> tuple[str, str]:
    """(what, scope) of a REST call: infer needs models:infer or
    models:<m>:infer, everything else models:read."""
    m = re.match(r"^/?v2/models/([^/]+)(?:/versions/[^/]+)?(/.*)?$", uri.split("?")[0])
    if m:
        model = urllib.parse.unquote(m.group(1))
        if (m.group(2) or "") == "/infer" and method == "POST":
            return f"inference on model {model!r}", f"models:infer or models:{model}:infer"
        return f"{method} {uri.split('?')[0]}", "models:read"
    return f"{method} {uri.split('?')[0]}", "models:read"


def scope_for_grpc(method: str, request: Any) -> tuple[str, str]:
    model = getattr(request, "model_name", "") or getattr(request, "name", "")
    if method in ("ModelInfer", "ModelStreamInfer"):
        if model:
            return f"{method} on model {model!r}", f"models:infer or models:{model}:infer"
        return method, "models:infer"
    return method + (f" of model {model!r}" if model else ""), "models:read"


def challenged_scope(headers: Mapping[str, str]) -> str:
    """The scope a 403's WWW-Authenticate names (RFC 6750 3: scope="..."),
    when the gateway names one."""
    m = re.search(r'scope="([^"]*)"', headers.get("www-authenticate", ""))
    return m.group(1) if m else ""


def refusal(status: str, kind: str | None, what: str, scope: str, says: str, headers: Mapping[str, str],
            attempts: Attempts) -> HelixError:
    """The exception for a final refusal: 401, 403, or a retryable one whose
    retries ran out."""
    if kind == RATE_LIMITED:
        return RateLimitedError(
            f"{what}: over the plan's rate limit ({says or 'rate limit exceeded'}; x-ratelimit-limit: "
            f"{headers.get('x-ratelimit-limit', '?')}) {attempts.describe()}: send fewer requests per second, "
            "raise RetryPolicy's max_attempts or deadline, or ask for a bigger plan",
            status, reset_seconds(headers), headers.get("x-ratelimit-limit", ""))
    if kind is not None:
        return UnavailableError(f"{what}: the service is unavailable ({says or 'unavailable'}) {attempts.describe()}: "
                                "a worker may be draining or the model loading; try again later", status)
    if status in ("401", "StatusCode.UNAUTHENTICATED"):
        return unauthenticated(what, status, says)
    return denied(what, challenged_scope(headers) or scope, status, says)
