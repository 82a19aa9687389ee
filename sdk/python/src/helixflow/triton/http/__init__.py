"""tritonclient.http with HelixFlow's credentials, TLS and retries.

    import helixflow.triton.http as httpclient   # was: import tritonclient.http as httpclient

Everything tritonclient.http exports is here; InferenceServerClient is
wrapped: url defaults to HELIX_HTTPS_URL (a scheme is accepted and
stripped), TLS is on with HELIX_CA_FILE, the credential comes from
`credentials=` or the HELIX_* environment, and every request is retried
under `retry=`.
"""

from __future__ import annotations

from typing import Any

import gevent

from tritonclient.http import *  # noqa: F401,F403 (the one-line change: everything tritonclient.http has)
from tritonclient.http import InferenceServerClient as _TritonClient

from ...credentials import Credentials, from_env
from ...retry import RetryPolicy, http_kind, reset_seconds
from .._common import AUTH_HEADERS, CredentialPlugin, SafeDel, resolve_ca_file, http_url, refusal, scope_for_http

__all__ = ["InferenceServerClient", "InferInput", "InferRequestedOutput", "InferResult",  # noqa: F405
           "InferenceServerException", "InferAsyncRequest", "InferenceServerClientPlugin", "Request"]  # noqa: F405


def error_text(body: bytes) -> str:
    import json
    try:
        v = json.loads(body)
        if isinstance(v, dict):
            return str(v.get("error_description") or v.get("error") or "")
    except ValueError:
        pass
    return body[:200].decode(errors="replace")


class InferenceServerClient(SafeDel, _TritonClient):
    """tritonclient.http.InferenceServerClient through HelixFlow's gateway.

    url: host:port or https://host:port (default HELIX_HTTPS_URL);
    credentials, api_key_env, ca_file, retry, anonymous: as
    helixflow.triton.grpc.InferenceServerClient's. ssl defaults to True
    (False for an http:// url), with the CA in ssl_options."""

    def __init__(self, url: str | None = None, verbose: bool = False, *args: Any,
                 credentials: Credentials | None = None, api_key_env: str | None = None,
                 ca_file: str | None = None, retry: RetryPolicy | None = None, anonymous: bool = False,
                 **kw: Any) -> None:
        u, tls = http_url(url)
        kw.setdefault("ssl", True if tls is None else tls)
        if kw["ssl"] and kw.get("ssl_options") is None and kw.get("ssl_context_factory") is None:
            ca = resolve_ca_file(ca_file)
            if ca:
                kw["ssl_options"] = {"ca_certs": ca}
        super().__init__(u, verbose, *args, **kw)
        self.credentials: Credentials | None = None if anonymous else from_env(credentials, api_key_env)
        self.retry_policy = retry or RetryPolicy()
        if self.credentials is not None:
            self.register_plugin(CredentialPlugin(self.credentials))

    def _send(self, method: str, uri: str, send: Any) -> Any:
        attempts = self.retry_policy.start()
        fresh_token_sent = False
        while True:
            r = send()
            status = int(r.status_code)
            kind = http_kind(status)
            if status == 401 and self.credentials is not None and not fresh_token_sent:
                r.read()
                self.credentials.invalidate()
                fresh_token_sent = True
                continue
            if status not in (401, 403) and kind is None:
                return r
            headers = {k.lower(): v for k, v in r.items()}
            body = r.read()
            w = attempts.next_wait(reset_seconds(headers)) if kind else None
            if w is None:
                what, scope = scope_for_http(method, uri)
                raise refusal(str(status), kind, what, scope, error_text(body), headers, attempts)
            # gevent's sleep: tritonclient.http runs async_infer in greenlets
            # of this thread, which a time.sleep would hold up.
            gevent.sleep(w)

    def _get(self, request_uri: str, headers: Any, query_params: Any) -> Any:
        return self._send("GET", request_uri, lambda: super(InferenceServerClient, self)._get(
            request_uri, _copy(headers), query_params))

    def _post(self, request_uri: str, request_body: Any, headers: Any, query_params: Any) -> Any:
        return self._send("POST", request_uri, lambda: super(InferenceServerClient, self)._post(
            request_uri, request_body, _copy(headers), query_params))


def _copy(headers: Any) -> Any:
    # Each attempt gets its own dict: the plugin writes the credential in.
    if headers is None:
        return None
    return {k: v for k, v in dict(headers).items() if k.lower() not in AUTH_HEADERS}


def __getattr__(name: str) -> Any:
    """Every other name of tritonclient.http (service_pb2, np_to_triton_dtype...),
    as it is there."""
    if name == "aio":  # ours, wrapped
        import importlib
        return importlib.import_module(__name__ + ".aio")
    import tritonclient.http as _theirs
    return getattr(_theirs, name)
