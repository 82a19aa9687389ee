"""WebSocket inference with reconnection (docs/websocket.md, "Clients").

    from helixflow.ws import connect, simple_request
    async with connect("simple") as c:        # HELIX_HTTPS_URL, HELIX_CA_FILE, credentials from the env
        answer = await c.infer(simple_request(0))

One logical stream of requests over reconnecting WebSockets:
- the credential in Sec-WebSocket-Protocol (`helix.bearer.<token>` beside
  `kserve.v2.helix`), as a browser must send it; or `Authorization: Bearer`
  / `x-api-key` in a header (bearer_header=True);
- answers matched by `id`, in any order;
- reconnection with exponential backoff and full jitter after a close
  (1012 when a worker drains, 1006 on a network fault, 1008 when the token
  expired), a fresh token asked for on every connect, and every request not
  yet answered sent again on the new connection, so nothing is lost.
  Requests must therefore be safe to run twice (inference is). A 503
  answer is sent again after a short backoff.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import os
import random
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Union

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .credentials import Credentials, from_env, ssl_context

PROTOCOL = "kserve.v2.helix"
TOKEN_PREFIX = "helix.bearer."
# Closes after which reconnecting cannot help.
FATAL_CLOSE = {1002, 1003, 1009}

TokenSource = Union[Credentials, Callable[[], str], Callable[[], Awaitable[str]]]
Answer = Union[dict[str, Any], tuple[dict[str, Any], bytes]]


class InferError(Exception):
    """An error answer to one message: code is the HTTP status REST would
    give (400, 404, 429 over the plan, 503...)."""

    def __init__(self, code: Any, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class HelixWS:
    """One logical stream of requests over reconnecting WebSockets.

    url: wss://host:port of the gateway; token: a Credentials (its token
    refreshed as needed), or a callable returning a current access token or
    API key (or an awaitable of one), called on every connect so an expired
    token is replaced."""

    def __init__(self, url: str, model: str, token: TokenSource, ssl_context: ssl.SSLContext | None = None,
                 version: str | None = None, bearer_header: bool = False, base_delay: float = 0.2,
                 max_delay: float = 10.0, max_attempts: int | None = None,
                 on_event: Callable[[str, Any], None] | None = None) -> None:
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer/ws"
        self.url = url.rstrip("/") + path
        self.token, self.ssl, self.bearer_header = token, ssl_context, bearer_header
        self.base_delay, self.max_delay, self.max_attempts = base_delay, max_delay, max_attempts
        self.on_event: Callable[[str, Any], None] = on_event or (lambda *a: None)
        self.pending: dict[str, tuple[str | bytes, asyncio.Future[Answer]]] = {}  # id -> (frame, future)
        self._retries: dict[str, int] = {}  # id -> 503 answers so far
        self.ws: ClientConnection | None = None
        self.connects = 0
        self._ids = itertools.count(1)
        self._ready = asyncio.Event()
        self._closed = False
        self._runner: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HelixWS:
        self._runner = asyncio.create_task(self._run())
        await self._ready.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        if self.ws is not None:
            await self.ws.close()
        if self._runner is not None:
            self._runner.cancel()
            try:
                await self._runner
            except (asyncio.CancelledError, Exception):
                pass
        for _, fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("client closed"))

    async def infer(self, request: dict[str, Any], binary: bytes | None = None) -> Any:
        """Sends one KServe v2 request (a dict; its id is set here unless
        given) and returns the answer (a dict; for a binary answer, a
        (header dict, raw bytes) pair). An error answer raises InferError."""
        rid = str(request.get("id") or next(self._ids))
        request = dict(request, id=rid)
        frame: str | bytes = json.dumps(request) if binary is None else encode_binary(request, binary)
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.pending[rid] = (frame, fut)
        await self._send(frame)
        return await fut

    async def _send(self, frame: str | bytes) -> None:
        # A send on a connection that just closed is not lost: the request
        # stays in pending and goes again after the reconnect.
        if self.ws is None:
            return
        try:
            await self.ws.send(frame)
        except ConnectionClosed:
            pass

    async def _token(self) -> str:
        if isinstance(self.token, Credentials):
            return await self.token.atoken()
        v = self.token()
        if inspect.isawaitable(v):
            return str(await v)
        return str(v)

    async def _connect(self) -> ClientConnection:
        tok = await self._token()
        kwargs: dict[str, Any] = dict(ssl=self.ssl, max_size=32 << 20, open_timeout=10, ping_interval=20,
                                      ping_timeout=20)
        if self.bearer_header:
            header = ({"x-api-key": tok} if tok.startswith("hx_") and not isinstance(self.token, Credentials)
                      else dict(self.token.headers()) if isinstance(self.token, Credentials)
                      else {"Authorization": "Bearer " + tok})
            kwargs.update(subprotocols=[PROTOCOL], additional_headers=header)
        else:
            kwargs.update(subprotocols=[PROTOCOL, TOKEN_PREFIX + tok])
        return await websockets.connect(self.url, **kwargs)

    async def _run(self) -> None:
        attempt = 0
        refused_401 = False
        while not self._closed:
            try:
                self.ws = await self._connect()
            except InvalidStatus as e:
                code = e.response.status_code
                self.on_event("connect-refused", code)
                if code in (401, 403, 404):  # retrying cannot help (a 401 gets a fresh token once)
                    if code != 401 or refused_401:
                        self._fail_all(e)
                        return
                    refused_401 = True
                    if isinstance(self.token, Credentials):
                        self.token.invalidate()
                await self._backoff(attempt)
                attempt += 1
                continue
            except (OSError, asyncio.TimeoutError, InvalidHandshake) as e:
                self.on_event("connect-failed", repr(e))
                if self.max_attempts is not None and attempt >= self.max_attempts:
                    self._fail_all(e)
                    return
                await self._backoff(attempt)
                attempt += 1
                continue
            attempt = 0
            refused_401 = False
            self.connects += 1
            self.on_event("connected", self.connects)
            self._ready.set()
            ws = self.ws
            # Everything not answered yet goes again: it may have been lost
            # with the old connection.
            for frame, _ in list(self.pending.values()):
                await self._send(frame)
            try:
                async for msg in ws:
                    self._answer(msg)
            except ConnectionClosed:
                pass
            code = ws.close_code or 1006
            reason = ws.close_reason or ""
            self.on_event("closed", code)
            self.ws = None
            if self._closed:
                return
            if code in FATAL_CLOSE:
                self._fail_all(ConnectionError(f"closed {code}: {reason}"))
                return
            # 1008 (the token expired): the next connect asks for a token
            # again, and Credentials hands out a new one well before expiry.
            await self._backoff(0)

    async def _backoff(self, attempt: int) -> None:
        # Full jitter: a drained worker's clients do not all come back at once.
        await asyncio.sleep(random.uniform(0, min(self.max_delay, self.base_delay * 2 ** attempt)))

    def _answer(self, msg: str | bytes) -> None:
        value: Answer
        if isinstance(msg, bytes):
            header, raw = decode_binary(msg)
            rid, value = header.get("id"), (header, raw)
        else:
            value = json.loads(msg)
            rid = value.get("id") if isinstance(value, dict) else None
        frame_fut = self.pending.pop(str(rid), None) if rid is not None else None
        if frame_fut is None:
            return  # an answer to a request sent twice, already answered
        frame, fut = frame_fut
        srid = str(rid)
        if isinstance(value, dict) and value.get("code") == 503 and self._retries.get(srid, 0) < 8:
            # A draining worker (or a moment's trouble) answers 503: the
            # request goes again shortly, on whatever connection is open then.
            self._retries[srid] = self._retries.get(srid, 0) + 1
            self.pending[srid] = frame_fut
            asyncio.get_running_loop().create_task(self._resend(srid, self._retries[srid]))
            return
        self._retries.pop(srid, None)
        if fut.done():
            return
        if isinstance(value, dict) and "error" in value:
            fut.set_exception(InferError(value.get("code"), value["error"]))
        else:
            fut.set_result(value)

    async def _resend(self, rid: str, attempt: int) -> None:
        await self._backoff(attempt)
        if rid in self.pending:
            await self._send(self.pending[rid][0])

    def _fail_all(self, err: BaseException) -> None:
        self._ready.set()
        for _rid, (_, fut) in list(self.pending.items()):
            if not fut.done():
                fut.set_exception(err if isinstance(err, Exception) else ConnectionError(str(err)))
        self.pending.clear()
        self._closed = True


def connect(model: str, *, url: str | None = None, credentials: Credentials | None = None,
            api_key_env: str | None = None, ca_file: str | None = None, version: str | None = None,
            **kw: Any) -> HelixWS:
    """A HelixWS for model through the gateway: url defaults to
    HELIX_HTTPS_URL (https becomes wss), TLS to HELIX_CA_FILE, credentials
    to the environment's. Use it with `async with`."""
    u = url or os.environ.get("HELIX_HTTPS_URL") or os.environ.get("HELIX_GRPC_ADDR") or ""
    if not u:
        from .errors import ConfigurationError
        raise ConfigurationError("the gateway's URL is required: pass url='wss://host:port' or set HELIX_HTTPS_URL")
    if "://" not in u:
        u = "wss://" + u
    u = u.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    ctx = ssl_context(ca_file) if u.startswith("wss://") else None
    return HelixWS(u, model, from_env(credentials, api_key_env), ctx, version=version, **kw)


def encode_binary(header: dict[str, Any], raw: bytes) -> bytes:
    """The binary frame: uint32 little-endian header length, the JSON
    header, then the tensors' raw bytes in input order."""
    h = json.dumps(header).encode()
    return len(h).to_bytes(4, "little") + h + raw


def decode_binary(frame: bytes) -> tuple[dict[str, Any], bytes]:
    n = int.from_bytes(frame[:4], "little")
    header: dict[str, Any] = json.loads(frame[4:4 + n])
    return header, frame[4 + n:]


def simple_request(i: int) -> dict[str, Any]:
    """A request for the sample model `simple` (OUTPUT0 = INPUT0 + INPUT1)."""
    return {"inputs": [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": [i + k for k in range(16)]},
        {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16}]}
