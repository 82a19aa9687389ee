"""Credentials: what every client of the SDK sends.

- ClientCredentials: an OAuth2 client (id and secret) whose access token is
  fetched from the token endpoint and fetched again before it expires, so
  a job of any length never sends an expired token. Thread- and
  asyncio-safe: one fetch at a time, whoever asks meanwhile waits for it.
- APIKey: an API key (`hx_...`), sent as `x-api-key`.
- PersonLogin: a person signed in through the browser (authorization code
  with PKCE S256 over a loopback redirect, as `helixctl login`), with the
  rotating refresh token, optionally kept in a file (0600) in helixctl's
  credentials.json format.

All have `headers()` (the request headers to send), `token()` (the bare
token or key, for a WebSocket subprotocol), their `a...` asyncio forms, and
`invalidate(token)`, which a client calls when the gateway answered 401 so
that the next call fetches a fresh token.
"""

from __future__ import annotations

import abc
import asyncio
import os
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from .errors import AuthenticationError, ConfigurationError, UnavailableError
from .retry import RetryPolicy, http_kind, reset_seconds


def ssl_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A client TLS context trusting ca_file (HELIX_CA_FILE when None and
    set; the system roots otherwise)."""
    ca = ca_file if ca_file is not None else os.environ.get("HELIX_CA_FILE") or None
    if ca is not None and not os.path.exists(ca):
        raise ConfigurationError(f"CA file {ca!r} (ca_file / HELIX_CA_FILE) does not exist")
    return ssl.create_default_context(cafile=ca)


def env(name: str, given: str | None = None, what: str = "") -> str:
    """given, else the environment variable name; a ConfigurationError
    naming both when neither is set."""
    v = given if given is not None else os.environ.get(name)
    if not v:
        raise ConfigurationError(f"{what or name} is required: pass it or set {name} (make run's .helix/local.env sets it)")
    return v


class Credentials(abc.ABC):
    """What a client sends. Subclasses: ClientCredentials, APIKey, PersonLogin."""

    @abc.abstractmethod
    def token(self) -> str:
        """The current token (or key), fetched or refreshed when due."""

    async def atoken(self) -> str:
        return await asyncio.to_thread(self.token)

    @abc.abstractmethod
    def headers(self) -> dict[str, str]:
        """The headers carrying the credential (lower-case names, as gRPC wants)."""

    async def aheaders(self) -> dict[str, str]:
        await self.atoken()
        return self.headers()

    def cached_headers(self) -> dict[str, str]:
        """headers() without a fetch when a token still valid is at hand
        (asyncio clients call this on the loop, then refresh off it)."""
        return self.headers()

    def invalidate(self, token: str | None = None) -> None:  # noqa: B027 (optional hook)
        """The gateway refused token (401): forget it, so the next call fetches another."""


class APIKey(Credentials):
    """An API key (`hx_...`). from_env reads it from a variable you name."""

    def __init__(self, key: str) -> None:
        if not key or any(c.isspace() for c in key):
            raise ConfigurationError("APIKey: the key is empty or holds whitespace")
        self.key = key

    @classmethod
    def from_env(cls, name: str = "HELIX_API_KEY") -> APIKey:
        return cls(env(name, what="an API key"))

    def token(self) -> str:
        return self.key

    async def atoken(self) -> str:
        return self.key

    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.key}

    def __repr__(self) -> str:
        return f"APIKey({self.key[:7]}...)"


class _Token:
    __slots__ = ("value", "expires_at", "lifetime")

    def __init__(self, value: str, expires_in: float, now: float) -> None:
        self.value = value
        self.lifetime = max(expires_in, 1.0)
        self.expires_at = now + self.lifetime


class _TokenSource(Credentials):
    """A cached bearer token, refreshed before expiry: once less than
    `margin` of its life is left (a third of its lifetime, at most 60 s),
    the next caller fetches a new one under a lock (one fetch in flight)
    while every other caller waits for it. When a refresh fails while the
    old token is still valid, the old one is used and the refresh tried
    again at the next call."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tok: _Token | None = None
        self._rejected = ""  # the token last invalidated: never taken back from a file
        self.fetches = 0  # tokens fetched so far (tests, metrics)

    @abc.abstractmethod
    def _fetch(self) -> tuple[str, float]:
        """A new token and its lifetime in seconds."""

    def _fresh(self, t: _Token | None) -> bool:
        if t is None:
            return False
        margin = min(60.0, t.lifetime / 3)
        return self._clock() < t.expires_at - margin

    def token(self) -> str:
        t = self._tok
        if t is not None and self._fresh(t):
            return t.value
        with self._lock:
            t = self._tok
            if t is not None and self._fresh(t):
                return t.value
            start = self._clock()
            try:
                value, expires_in = self._fetch()
            except (UnavailableError, httpx.TransportError):
                if t is not None and self._clock() < t.expires_at - 1:
                    return t.value  # still valid: use it, try again next call
                raise
            self.fetches += 1
            self._tok = _Token(value, expires_in, start)
            return value

    async def atoken(self) -> str:
        t = self._tok
        if t is not None and self._fresh(t):
            return t.value
        # The fetch runs in a thread under the one lock, so that sync and
        # asyncio callers, in any loop, share one fetch.
        return await asyncio.to_thread(self.token)

    def headers(self) -> dict[str, str]:
        return {"authorization": "Bearer " + self.token()}

    def cached_headers(self) -> dict[str, str]:
        t = self._tok
        if t is not None and self._clock() < t.expires_at - 1:
            return {"authorization": "Bearer " + t.value}
        return self.headers()

    def invalidate(self, token: str | None = None) -> None:
        with self._lock:
            if self._tok is not None and (token is None or self._tok.value == token):
                self._rejected = self._tok.value
                self._tok = None


def _oauth_error(r: httpx.Response) -> tuple[str, str]:
    try:
        body = r.json()
        return str(body.get("error", "")), str(body.get("error_description", ""))
    except (ValueError, AttributeError):
        return "", r.text[:200]


def _post_token(http: httpx.Client, url: str, form: Mapping[str, str], auth: httpx.Auth | None,
                retry: RetryPolicy, who: str) -> dict[str, Any]:
    """POSTs a token request; 429/503 and network errors retried under
    retry; other refusals raise AuthenticationError naming the OAuth error."""
    attempts = retry.start()
    while True:
        try:
            r = http.post(url, data=dict(form), auth=auth) if auth is not None else http.post(url, data=dict(form))
        except httpx.TransportError as e:
            w = attempts.next_wait()
            if w is None:
                raise UnavailableError(f"token endpoint {url} cannot be reached ({e!r}) {attempts.describe()}: "
                                       "check HELIX_TOKEN_URL and that helix-authz runs") from e
            attempts.sleep(w)
            continue
        if r.status_code == 200:
            body: dict[str, Any] = r.json()
            if not body.get("access_token"):
                raise AuthenticationError(f"token endpoint {url} answered without an access_token")
            return body
        code, desc = _oauth_error(r)
        if http_kind(r.status_code) is not None:
            w = attempts.next_wait(reset_seconds(r.headers))
            if w is not None:
                attempts.sleep(w)
                continue
            raise UnavailableError(f"token endpoint {url} answered {r.status_code} {code} {attempts.describe()}: "
                                   f"{desc or 'try again later'}", str(r.status_code))
        raise AuthenticationError(f"token endpoint {url} refused {who}: {code or r.status_code}"
                                  + (f" ({desc})" if desc else ""), str(r.status_code))


class ClientCredentials(_TokenSource):
    """OAuth2 client credentials (client_secret_basic). Arguments left None
    come from HELIX_CLIENT_ID, HELIX_CLIENT_SECRET, HELIX_TOKEN_URL and
    HELIX_CA_FILE."""

    def __init__(self, client_id: str | None = None, client_secret: str | None = None, token_url: str | None = None,
                 *, ca_file: str | None = None, scopes: list[str] | None = None,
                 retry: RetryPolicy | None = None, timeout: float = 20.0,
                 clock: Callable[[], float] = time.monotonic, http: httpx.Client | None = None) -> None:
        super().__init__(clock)
        self.client_id = env("HELIX_CLIENT_ID", client_id, "the client id")
        self._secret = env("HELIX_CLIENT_SECRET", client_secret, "the client secret")
        self.token_url = env("HELIX_TOKEN_URL", token_url, "the token endpoint")
        self.scopes = scopes
        self._retry = retry or RetryPolicy(max_attempts=6, deadline=30.0)
        # http: an httpx.Client of your own (proxies, a test transport).
        self._http = http or httpx.Client(verify=ssl_context(ca_file), timeout=timeout)

    @classmethod
    def from_env(cls, **kw: Any) -> ClientCredentials:
        return cls(**kw)

    def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": "client_credentials"}
        if self.scopes:
            form["scope"] = " ".join(self.scopes)
        # RFC 6749 2.3.1: id and secret are form-encoded before Basic.
        auth = httpx.BasicAuth(urllib.parse.quote(self.client_id, safe=""), urllib.parse.quote(self._secret, safe=""))
        try:
            body = _post_token(self._http, self.token_url, form, auth, self._retry, f"client {self.client_id}")
        except AuthenticationError as e:
            raise AuthenticationError(f"{e.message()}. Check HELIX_CLIENT_ID and HELIX_CLIENT_SECRET: the id must be "
                                      "a client's and the secret its current one (rotate-secret replaces it)",
                                      e.status()) from None
        return str(body["access_token"]), float(body.get("expires_in") or 60)

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"ClientCredentials({self.client_id!r}, token_url={self.token_url!r})"


def from_env(credentials: Credentials | None = None, api_key_env: str | None = None) -> Credentials:
    """The credentials a client uses when it is given none: the API key in
    the variable api_key_env names, else HELIX_API_KEY, else client
    credentials from HELIX_CLIENT_ID / HELIX_CLIENT_SECRET / HELIX_TOKEN_URL."""
    if credentials is not None:
        return credentials
    if api_key_env:
        return APIKey.from_env(api_key_env)
    if os.environ.get("HELIX_API_KEY"):
        return APIKey.from_env("HELIX_API_KEY")
    if os.environ.get("HELIX_CLIENT_ID") or os.environ.get("HELIX_CLIENT_SECRET"):
        return ClientCredentials()
    raise ConfigurationError("no credentials: pass credentials=, or set HELIX_CLIENT_ID, HELIX_CLIENT_SECRET and "
                             "HELIX_TOKEN_URL (source .helix/local.env), or an API key in HELIX_API_KEY")


# PersonLogin lives in person.py (it builds on _TokenSource above).
from .person import PersonLogin  # noqa: E402

__all__ = ["APIKey", "ClientCredentials", "Credentials", "PersonLogin", "env", "from_env", "ssl_context"]
