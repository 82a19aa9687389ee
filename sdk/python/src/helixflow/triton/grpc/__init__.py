"""tritonclient.grpc with HelixFlow's credentials, TLS and retries.

    import helixflow.triton.grpc as grpcclient   # was: import tritonclient.grpc as grpcclient

Everything tritonclient.grpc exports is here; InferenceServerClient is
wrapped: its url defaults to HELIX_GRPC_ADDR, TLS is on with HELIX_CA_FILE,
the credential comes from `credentials=` or the HELIX_* environment
(helixflow.credentials.from_env), and unary calls are retried under
`retry=` (helixflow.retry.RetryPolicy).
"""

from __future__ import annotations

from typing import Any

import grpc as _grpc
from tritonclient.grpc import *  # noqa: F401,F403 (the one-line change: everything tritonclient.grpc has)
from tritonclient.grpc import InferenceServerClient as _TritonClient

from ...credentials import Credentials, from_env
from ...retry import Attempts, RetryPolicy, grpc_kind, reset_seconds
from .._common import AUTH_HEADERS, CredentialPlugin, SafeDel, resolve_ca_file, grpc_url, refusal, scope_for_grpc

__all__ = ["InferenceServerClient", "InferInput", "InferRequestedOutput", "InferResult",  # noqa: F405
           "InferenceServerException", "KeepAliveOptions", "InferenceServerClientPlugin", "Request"]  # noqa: F405

# Streams (a stream-stream call) are passed through: their messages' errors
# come in the stream.
_STREAMS = {"ModelStreamInfer"}


def _code_name(e: Any) -> str:
    try:
        return str(e.code().name)
    except Exception:  # not a call error
        return "UNKNOWN"


def _trailers(e: Any) -> dict[str, str]:
    try:
        return {str(k).lower(): str(v) for k, v in (e.trailing_metadata() or ())}
    except Exception:
        return {}


def _metadata(metadata: Any, credentials: Credentials | None) -> list[tuple[str, str]]:
    md = [(k, v) for k, v in (metadata or ()) if credentials is None or k.lower() not in AUTH_HEADERS]
    if credentials is not None:
        md.extend(credentials.headers().items())
    return md


def _token_of(md: list[tuple[str, str]]) -> str | None:
    for k, v in md:
        if k == "authorization" and v.startswith("Bearer "):
            return v[len("Bearer "):]
    return None


class _Unary:
    """One unary method of the stub, retried."""

    def __init__(self, name: str, call: Any, credentials: Credentials | None, policy: RetryPolicy) -> None:
        self.name, self.call, self.credentials, self.policy = name, call, credentials, policy

    def __call__(self, request: Any, *args: Any, metadata: Any = None, **kw: Any) -> Any:
        attempts: Attempts = self.policy.start()
        fresh_token_sent = False
        md = list(metadata or ())
        while True:
            try:
                return self.call(request, *args, metadata=md, **kw)
            except _grpc.RpcError as e:
                code = _code_name(e)
                kind = grpc_kind(code)
                if code == "UNAUTHENTICATED" and self.credentials is not None and not fresh_token_sent:
                    self.credentials.invalidate(_token_of(md))
                    md = _metadata(md, self.credentials)
                    fresh_token_sent = True
                    continue
                if code not in ("UNAUTHENTICATED", "PERMISSION_DENIED") and kind is None:
                    raise
                trailers = _trailers(e)
                w = attempts.next_wait(reset_seconds(trailers)) if kind else None
                if w is None:
                    what, scope = scope_for_grpc(self.name, request)
                    raise refusal(f"StatusCode.{code}", kind, what, scope, str(e.details() or ""), trailers,
                                  attempts) from None
                attempts.sleep(w)
                md = _metadata(md, self.credentials)  # a token fetched meanwhile

    def __getattr__(self, attr: str) -> Any:  # future, with_call: as grpc's
        return getattr(self.call, attr)


class _Stub:
    def __init__(self, stub: Any, credentials: Credentials | None, policy: RetryPolicy) -> None:
        self._stub, self._credentials, self._policy = stub, credentials, policy

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._stub, name)
        if name in _STREAMS or name.startswith("_"):
            return call
        return _Unary(name, call, self._credentials, self._policy)


class InferenceServerClient(SafeDel, _TritonClient):
    """tritonclient.grpc.InferenceServerClient through HelixFlow's gateway.

    url: host:port (default HELIX_GRPC_ADDR); credentials: a
    helixflow.credentials.Credentials (default: from the environment,
    api_key_env naming the variable of an API key); ssl defaults to True
    with root_certificates from ca_file / HELIX_CA_FILE; retry: the
    RetryPolicy of unary calls (helixflow.retry.NO_RETRY: none). The other
    arguments are tritonclient's."""

    def __init__(self, url: str | None = None, verbose: bool = False, ssl: bool = True,
                 root_certificates: str | None = None, *args: Any, credentials: Credentials | None = None,
                 api_key_env: str | None = None, ca_file: str | None = None, retry: RetryPolicy | None = None,
                 anonymous: bool = False, **kw: Any) -> None:
        if ssl and root_certificates is None:
            root_certificates = resolve_ca_file(ca_file)
        super().__init__(grpc_url(url), verbose, ssl, root_certificates, *args, **kw)
        self.credentials: Credentials | None = None if anonymous else from_env(credentials, api_key_env)
        self.retry_policy = retry or RetryPolicy()
        if self.credentials is not None:
            self.register_plugin(CredentialPlugin(self.credentials))
        stub: Any = getattr(self, "_client_stub")  # tritonclient's stub, wrapped
        self._client_stub = _Stub(stub, self.credentials, self.retry_policy)


def __getattr__(name: str) -> Any:
    """Every other name of tritonclient.grpc (service_pb2, np_to_triton_dtype...),
    as it is there."""
    if name == "aio":  # ours, wrapped
        import importlib
        return importlib.import_module(__name__ + ".aio")
    import tritonclient.grpc as _theirs
    return getattr(_theirs, name)
