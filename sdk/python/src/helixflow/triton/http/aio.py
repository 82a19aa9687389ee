"""tritonclient.http.aio with HelixFlow's credentials, TLS and retries.

    import helixflow.triton.http.aio as httpclient   # was: import tritonclient.http.aio as httpclient
"""

from __future__ import annotations

import ssl as _ssl
from typing import Any

from tritonclient.http.aio import *  # noqa: F401,F403 (the one-line change: everything tritonclient.http.aio has)
from tritonclient.http.aio import InferenceServerClient as _TritonClient

from ...credentials import Credentials, from_env
from ...retry import RetryPolicy, http_kind, reset_seconds
from .._common import CredentialPlugin, SafeDel, resolve_ca_file, http_url, refusal, scope_for_http
from . import _copy, error_text

__all__ = ["InferenceServerClient", "InferInput", "InferRequestedOutput", "InferResult",  # noqa: F405
           "InferenceServerException"]


class InferenceServerClient(SafeDel, _TritonClient):
    """tritonclient.http.aio.InferenceServerClient through HelixFlow's
    gateway; arguments as helixflow.triton.http.InferenceServerClient's
    (the CA goes into ssl_context)."""

    def __init__(self, url: str | None = None, verbose: bool = False, *args: Any,
                 credentials: Credentials | None = None, api_key_env: str | None = None,
                 ca_file: str | None = None, retry: RetryPolicy | None = None, anonymous: bool = False,
                 **kw: Any) -> None:
        u, tls = http_url(url)
        kw.setdefault("ssl", True if tls is None else tls)
        if kw["ssl"] and kw.get("ssl_context") is None:
            kw["ssl_context"] = _ssl.create_default_context(cafile=resolve_ca_file(ca_file))
        super().__init__(u, verbose, *args, **kw)
        self.credentials: Credentials | None = None if anonymous else from_env(credentials, api_key_env)
        self.retry_policy = retry or RetryPolicy()
        if self.credentials is not None:
            self.register_plugin(CredentialPlugin(self.credentials, nowait=True))

    async def _send(self, method: str, uri: str, send: Any) -> Any:
        attempts = self.retry_policy.start()
        fresh_token_sent = False
        while True:
            if self.credentials is not None:
                await self.credentials.atoken()  # off the loop when due; the plugin then finds it
            r = await send()
            status = int(r.status)
            kind = http_kind(status)
            if status == 401 and self.credentials is not None and not fresh_token_sent:
                await r.read()
                self.credentials.invalidate()
                fresh_token_sent = True
                continue
            if status not in (401, 403) and kind is None:
                return r
            headers = {k.lower(): v for k, v in r.headers.items()}
            body = await r.read()
            w = attempts.next_wait(reset_seconds(headers)) if kind else None
            if w is None:
                what, scope = scope_for_http(method, uri)
                raise refusal(str(status), kind, what, scope, error_text(body), headers, attempts)
            await attempts.asleep(w)

    async def _get(self, request_uri: str, headers: Any, query_params: Any) -> Any:
        return await self._send("GET", request_uri, lambda: super(InferenceServerClient, self)._get(
            request_uri, _copy(headers), query_params))

    async def _post(self, request_uri: str, request_body: Any, headers: Any, query_params: Any) -> Any:
        return await self._send("POST", request_uri, lambda: super(InferenceServerClient, self)._post(
            request_uri, request_body, _copy(headers), query_params))


def __getattr__(name: str) -> Any:
    """Every other name of tritonclient.http.aio (service_pb2, np_to_triton_dtype...),
    as it is there."""
    import tritonclient.http.aio as _theirs
    return getattr(_theirs, name)
