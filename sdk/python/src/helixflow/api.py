"""The model catalogue (GET /api/v1/models) and usage (GET /api/v1/usage)
through the gateway, with the SDK's credentials and retry policy.

    from helixflow import Client
    with Client() as c:                      # HELIX_HTTPS_URL, HELIX_CA_FILE, HELIX_CLIENT_ID/SECRET
        for m in c.models(): print(m["name"], m["ready"])
        print(c.usage(granularity="day")["totals"])

Listing the catalogue or the usage spends no plan quota. A person's token
(PersonLogin) may list the catalogue; usage is a client's own (a person's
token is refused 403 there: use helixctl usage --org for an organization's).
Shapes: api/openapi.yaml (Model, UsageReport).
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Literal, TypedDict

import httpx

from .credentials import Credentials, from_env, ssl_context
from .errors import (APIError, ConfigurationError, HelixError, PermissionDeniedError, UnavailableError, denied,
                     unauthenticated)
from .retry import Attempts, RetryPolicy, http_kind, reset_seconds


class Tensor(TypedDict):
    name: str
    datatype: str
    shape: list[int]


class Model(TypedDict):
    name: str
    versions: list[str]
    ready: bool
    workers: int
    ready_workers: int
    platform: str
    max_batch_size: int
    inputs: list[Tensor]
    outputs: list[Tensor]
    config: dict[str, Any] | None


class UsageCounts(TypedDict):
    requests: int
    inferences: int
    errors: int
    throttled: int
    compute_seconds: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None


class UsageRow(UsageCounts):
    start: str
    client_id: str
    model: str


class UsageReport(TypedDict):
    granularity: str
    # "from" is a keyword: read it as report["from"].
    to: str
    rows: list[UsageRow]
    totals: UsageCounts


Day = datetime.date | datetime.datetime | str


def _when(v: Day) -> str:
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return v.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(v, datetime.date):
        return v.isoformat()
    return v


def _usage_params(from_: Day | None, to: Day | None, granularity: str | None, client: str | None,
                  model: str | None) -> dict[str, str]:
    q: dict[str, str] = {}
    if from_ is not None:
        q["from"] = _when(from_)
    if to is not None:
        q["to"] = _when(to)
    if granularity is not None:
        q["granularity"] = granularity
    if client is not None:
        q["client"] = client
    if model is not None:
        q["model"] = model
    return q


def _base(url: str | None) -> str:
    u = url or os.environ.get("HELIX_HTTPS_URL") or ""
    if not u:
        raise ConfigurationError("the gateway's URL is required: pass url='https://host:port' or set HELIX_HTTPS_URL")
    if "://" not in u:
        u = "https://" + u
    return u.rstrip("/")


def _error(r: httpx.Response, what: str, attempts: Attempts) -> HelixError:
    code, desc = "", ""
    try:
        b = r.json()
        code, desc = str(b.get("error", "")), str(b.get("error_description", ""))
    except (ValueError, AttributeError):
        desc = r.text[:200]
    st = str(r.status_code)
    if r.status_code == 401:
        return unauthenticated(what, st, code)
    if r.status_code == 403:
        if code == "insufficient_scope" or not desc:
            return denied(what, "models:read or models:infer", st, code)
        return PermissionDeniedError(f"{what}: forbidden ({code}): {desc}", st)
    kind = http_kind(r.status_code)
    if kind is not None:
        return UnavailableError(f"{what}: HTTP {r.status_code} {code} {attempts.describe()}: {desc or 'try again later'}",
                                st)
    return APIError(f"{what}: HTTP {r.status_code} {code}: {desc}", st, code)


class _Base:
    def __init__(self, url: str | None, credentials: Credentials | None, api_key_env: str | None,
                 ca_file: str | None, retry: RetryPolicy | None) -> None:
        self.url = _base(url)
        self.credentials = from_env(credentials, api_key_env)
        self.retry_policy = retry or RetryPolicy()
        self._verify = ssl_context(ca_file)


class Client(_Base):
    """The catalogue and usage calls (blocking). url defaults to
    HELIX_HTTPS_URL, ca_file to HELIX_CA_FILE, credentials to the
    environment's (helixflow.credentials.from_env)."""

    def __init__(self, url: str | None = None, *, credentials: Credentials | None = None,
                 api_key_env: str | None = None, ca_file: str | None = None, retry: RetryPolicy | None = None,
                 timeout: float = 30.0) -> None:
        super().__init__(url, credentials, api_key_env, ca_file, retry)
        self._http = httpx.Client(base_url=self.url, verify=self._verify, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _get(self, path: str, what: str, params: dict[str, str] | None = None) -> httpx.Response:
        attempts = self.retry_policy.start()
        fresh = False
        while True:
            try:
                r = self._http.get(path, params=params, headers=self.credentials.headers())
            except httpx.TransportError as e:
                w = attempts.next_wait()
                if w is None:
                    raise UnavailableError(f"{what}: {self.url} cannot be reached ({e!r}) {attempts.describe()}") from e
                attempts.sleep(w)
                continue
            if r.status_code == 401 and not fresh:
                self.credentials.invalidate()
                fresh = True
                continue
            if http_kind(r.status_code) is not None:
                w = attempts.next_wait(reset_seconds(r.headers))
                if w is not None:
                    attempts.sleep(w)
                    continue
            if r.status_code != 200:
                raise _error(r, what, attempts)
            return r

    def models(self) -> list[Model]:
        """The models the credential reaches, by name."""
        body: dict[str, list[Model]] = self._get("/api/v1/models", "GET /api/v1/models (the model catalogue)").json()
        return body["models"]

    def model(self, name: str) -> Model:
        """One model; APIError with code not_found when it is not served or
        not reachable with this credential."""
        from urllib.parse import quote
        m: Model = self._get(f"/api/v1/models/{quote(name, safe='')}", f"GET /api/v1/models/{name}").json()
        return m

    def usage(self, from_: Day | None = None, to: Day | None = None,
              granularity: Literal["hour", "day"] | None = None, client: str | None = None,
              model: str | None = None) -> UsageReport:
        """The calling client's own usage report (JSON)."""
        r: UsageReport = self._get("/api/v1/usage", "GET /api/v1/usage (usage)",
                                   _usage_params(from_, to, granularity, client, model)).json()
        return r

    def usage_csv(self, from_: Day | None = None, to: Day | None = None,
                  granularity: Literal["hour", "day"] | None = None, client: str | None = None,
                  model: str | None = None) -> str:
        q = _usage_params(from_, to, granularity, client, model)
        q["format"] = "csv"
        return self._get("/api/v1/usage", "GET /api/v1/usage (usage)", q).text


class AsyncClient(_Base):
    """Client's calls for asyncio."""

    def __init__(self, url: str | None = None, *, credentials: Credentials | None = None,
                 api_key_env: str | None = None, ca_file: str | None = None, retry: RetryPolicy | None = None,
                 timeout: float = 30.0) -> None:
        super().__init__(url, credentials, api_key_env, ca_file, retry)
        self._http = httpx.AsyncClient(base_url=self.url, verify=self._verify, timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str, what: str, params: dict[str, str] | None = None) -> httpx.Response:
        attempts = self.retry_policy.start()
        fresh = False
        while True:
            try:
                r = await self._http.get(path, params=params, headers=await self.credentials.aheaders())
            except httpx.TransportError as e:
                w = attempts.next_wait()
                if w is None:
                    raise UnavailableError(f"{what}: {self.url} cannot be reached ({e!r}) {attempts.describe()}") from e
                await attempts.asleep(w)
                continue
            if r.status_code == 401 and not fresh:
                self.credentials.invalidate()
                fresh = True
                continue
            if http_kind(r.status_code) is not None:
                w = attempts.next_wait(reset_seconds(r.headers))
                if w is not None:
                    await attempts.asleep(w)
                    continue
            if r.status_code != 200:
                raise _error(r, what, attempts)
            return r

    async def models(self) -> list[Model]:
        body: dict[str, list[Model]] = (await self._get("/api/v1/models", "GET /api/v1/models")).json()
        return body["models"]

    async def model(self, name: str) -> Model:
        from urllib.parse import quote
        m: Model = (await self._get(f"/api/v1/models/{quote(name, safe='')}", f"GET /api/v1/models/{name}")).json()
        return m

    async def usage(self, from_: Day | None = None, to: Day | None = None,
                    granularity: Literal["hour", "day"] | None = None, client: str | None = None,
                    model: str | None = None) -> UsageReport:
        r: UsageReport = (await self._get("/api/v1/usage", "GET /api/v1/usage (usage)",
                                          _usage_params(from_, to, granularity, client, model))).json()
        return r
