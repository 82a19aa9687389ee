"""tritonclient.grpc.aio with HelixFlow's credentials, TLS and retries.

    import helixflow.triton.grpc.aio as grpcclient   # was: import tritonclient.grpc.aio as grpcclient

As helixflow.triton.grpc, for asyncio: tokens are fetched off the event
loop (before each call, so the plugin finds a valid one), and waits
between attempts are asyncio.sleep.
"""

from __future__ import annotations

from typing import Any

import grpc as _grpc
from tritonclient.grpc.aio import *  # noqa: F401,F403 (the one-line change: everything tritonclient.grpc.aio has)
from tritonclient.grpc.aio import InferenceServerClient as _TritonClient

from ...credentials import Credentials, from_env
from ...retry import RetryPolicy, grpc_kind, reset_seconds
from .._common import CredentialPlugin, SafeDel, resolve_ca_file, grpc_url, refusal, scope_for_grpc
from . import _STREAMS, _code_name, _metadata, _token_of

__all__ = ["InferenceServerClient", "InferInput", "InferRequestedOutput", "InferResult",  # noqa: F405
           "InferenceServerException", "KeepAliveOptions"]


async def _trailers(e: Any) -> dict[str, str]:
    try:
        md = e.trailing_metadata()
        if hasattr(md, "__await__"):
            md = await md
        return {str(k).lower(): str(v) for k, v in (md or ())}
    except Exception:
        return {}


class _Unary:
    def __init__(self, name: str, call: Any, credentials: Credentials | None, policy: RetryPolicy) -> None:
        self.name, self.call, self.credentials, self.policy = name, call, credentials, policy

    async def __call__(self, request: Any, *args: Any, metadata: Any = None, **kw: Any) -> Any:
        attempts = self.policy.start()
        fresh_token_sent = False
        md = list(metadata or ())
        if self.credentials is not None:
            await self.credentials.atoken()  # off the loop when due
            md = _metadata(md, self.credentials)
        while True:
            try:
                return await self.call(request, *args, metadata=md, **kw)
            except _grpc.RpcError as e:
                code = _code_name(e)
                kind = grpc_kind(code)
                if code == "UNAUTHENTICATED" and self.credentials is not None and not fresh_token_sent:
                    self.credentials.invalidate(_token_of(md))
                    await self.credentials.atoken()
                    md = _metadata(md, self.credentials)
                    fresh_token_sent = True
                    continue
                if code not in ("UNAUTHENTICATED", "PERMISSION_DENIED") and kind is None:
                    raise
                trailers = await _trailers(e)
                w = attempts.next_wait(reset_seconds(trailers)) if kind else None
                if w is None:
                    what, scope = scope_for_grpc(self.name, request)
                    raise refusal(f"StatusCode.{code}", kind, what, scope, str(e.details() or ""), trailers,
                                  attempts) from None
                await attempts.asleep(w)
                if self.credentials is not None:
                    await self.credentials.atoken()
                md = _metadata(md, self.credentials)


class _Stub:
    def __init__(self, stub: Any, credentials: Credentials | None, policy: RetryPolicy) -> None:
        self._stub, self._credentials, self._policy = stub, credentials, policy

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._stub, name)
        if name in _STREAMS or name.startswith("_"):
            return call
        return _Unary(name, call, self._credentials, self._policy)


class InferenceServerClient(SafeDel, _TritonClient):
    """tritonclient.grpc.aio.InferenceServerClient through HelixFlow's
    gateway; arguments as helixflow.triton.grpc.InferenceServerClient's."""

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
            self.register_plugin(CredentialPlugin(self.credentials, nowait=True))
        stub: Any = getattr(self, "_client_stub")  # tritonclient's stub, wrapped
        self._client_stub = _Stub(stub, self.credentials, self.retry_policy)

    async def prefetch(self) -> None:
        """Fetches the token off the event loop (optional: the first call
        otherwise fetches it on the loop)."""
        if self.credentials is not None:
            await self.credentials.atoken()


def __getattr__(name: str) -> Any:
    """Every other name of tritonclient.grpc.aio (service_pb2, np_to_triton_dtype...),
    as it is there."""
    import tritonclient.grpc.aio as _theirs
    return getattr(_theirs, name)
