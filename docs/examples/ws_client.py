#!/usr/bin/env python3
"""A reconnecting HelixFlow WebSocket inference client (docs/websocket.md,
"Clients"), with Python's `websockets` (17.x).

    python docs/examples/ws_client.py --url wss://127.0.0.1:8443 --ca-file .helix/pki/ca.crt \
        --model simple --count 100          # token from $HELIX_TOKEN

What it shows:
- the credential in Sec-WebSocket-Protocol (`helix.bearer.<token>` beside
  `kserve.v2.helix`), as a browser must send it; a Python client may send
  `Authorization: Bearer` instead (bearer_header=True);
- answers matched by `id`, in any order;
- reconnection with exponential backoff and full jitter after a close
  (1012 when a worker drains, 1006 on a network fault, 1008 when the token
  expired: a fresh token is asked for on every connect), and every request
  not yet answered sent again on the new connection, so nothing is lost.
  Requests must therefore be safe to run twice (inference is).
"""

import argparse
import asyncio
import itertools
import json
import os
import random
import ssl
import sys

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

PROTOCOL = "kserve.v2.helix"
TOKEN_PREFIX = "helix.bearer."
# Closes after which reconnecting cannot help.
FATAL_CLOSE = {1002, 1003, 1009}


class HelixWS:
    """One logical stream of requests over reconnecting WebSockets.

    token: a callable returning a current access token or API key (called
    on every connect, so an expired token is replaced)."""

    def __init__(self, url, model, token, ssl_context=None, version=None, bearer_header=False,
                 base_delay=0.2, max_delay=10.0, max_attempts=None, on_event=None):
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer/ws"
        self.url = url.rstrip("/") + path
        self.token, self.ssl, self.bearer_header = token, ssl_context, bearer_header
        self.base_delay, self.max_delay, self.max_attempts = base_delay, max_delay, max_attempts
        self.on_event = on_event or (lambda *a: None)
        self.pending = {}  # id -> (request frame, future)
        self._retries = {}  # id -> 503 answers so far
        self.ws = None
        self.connects = 0
        self._ids = itertools.count(1)
        self._ready = asyncio.Event()
        self._closed = False
        self._runner = None

    async def __aenter__(self):
        self._runner = asyncio.create_task(self._run())
        await self._ready.wait()
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def close(self):
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

    async def infer(self, request, binary=None):
        """Sends one KServe v2 request (a dict; its id is set here unless
        given) and returns the answer (a dict; for a binary answer, a
        (header dict, raw bytes) pair). An error answer raises InferError."""
        rid = str(request.get("id") or next(self._ids))
        request = dict(request, id=rid)
        frame = json.dumps(request) if binary is None else encode_binary(request, binary)
        fut = asyncio.get_running_loop().create_future()
        self.pending[rid] = (frame, fut)
        await self._send(frame)
        return await fut

    async def _send(self, frame):
        # A send on a connection that just closed is not lost: the request
        # stays in pending and goes again after the reconnect.
        if self.ws is None:
            return
        try:
            await self.ws.send(frame)
        except ConnectionClosed:
            pass

    async def _connect(self):
        tok = self.token()
        kwargs = dict(ssl=self.ssl, max_size=32 << 20, open_timeout=10, ping_interval=20, ping_timeout=20)
        if self.bearer_header:
            kwargs.update(subprotocols=[PROTOCOL], additional_headers={"Authorization": "Bearer " + tok})
        else:
            kwargs.update(subprotocols=[PROTOCOL, TOKEN_PREFIX + tok])
        return await websockets.connect(self.url, **kwargs)

    async def _run(self):
        attempt = 0
        while not self._closed:
            try:
                self.ws = await self._connect()
            except InvalidStatus as e:
                code = e.response.status_code
                if code in (401, 403, 404):  # retrying cannot help (a 401 gets a fresh token once)
                    if code != 401 or attempt > 0:
                        self._fail_all(e)
                        return
                await self._backoff(attempt)
                attempt += 1
                continue
            except (OSError, asyncio.TimeoutError, websockets.exceptions.InvalidHandshake) as e:
                self.on_event("connect-failed", repr(e))
                if self.max_attempts is not None and attempt >= self.max_attempts:
                    self._fail_all(e)
                    return
                await self._backoff(attempt)
                attempt += 1
                continue
            attempt = 0
            self.connects += 1
            self.on_event("connected", self.connects)
            self._ready.set()
            # Everything not answered yet goes again: it may have been lost
            # with the old connection.
            for frame, _ in list(self.pending.values()):
                await self._send(frame)
            try:
                async for msg in self.ws:
                    self._answer(msg)
            except ConnectionClosed:
                pass
            code, reason = self.ws.close_code or 1006, self.ws.close_reason or ""
            self.on_event("closed", code)
            self.ws = None
            if self._closed:
                return
            if code in FATAL_CLOSE:
                self._fail_all(ConnectionError(f"closed {code}: {reason}"))
                return
            await self._backoff(0)

    async def _backoff(self, attempt):
        # Full jitter: a drained worker's clients do not all come back at once.
        await asyncio.sleep(random.uniform(0, min(self.max_delay, self.base_delay * 2 ** attempt)))

    def _answer(self, msg):
        if isinstance(msg, bytes):
            header, raw = decode_binary(msg)
            rid, value = header.get("id"), (header, raw)
        else:
            value = json.loads(msg)
            rid = value.get("id")
        frame_fut = self.pending.pop(str(rid), None) if rid is not None else None
        if frame_fut is None:
            return  # an answer to a request sent twice, already answered
        frame, fut = frame_fut
        if isinstance(value, dict) and value.get("code") == 503 and self._retries.get(rid, 0) < 8:
            # A draining worker (or a moment's trouble) answers 503: the
            # request goes again shortly, on whatever connection is open then.
            self._retries[rid] = self._retries.get(rid, 0) + 1
            self.pending[str(rid)] = frame_fut
            asyncio.get_running_loop().create_task(self._resend(str(rid), self._retries[rid]))
            return
        self._retries.pop(rid, None)
        if isinstance(value, dict) and "error" in value:
            fut.set_exception(InferError(value.get("code"), value["error"]))
        else:
            fut.set_result(value)

    async def _resend(self, rid, attempt):
        await self._backoff(attempt)
        if rid in self.pending:
            await self._send(self.pending[rid][0])

    def _fail_all(self, err):
        self._ready.set()
        for rid, (_, fut) in list(self.pending.items()):
            if not fut.done():
                fut.set_exception(err if isinstance(err, Exception) else ConnectionError(str(err)))
        self.pending.clear()
        self._closed = True


class InferError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


def encode_binary(header, raw):
    """The binary frame: uint32 little-endian header length, the JSON
    header, then the tensors' raw bytes in input order."""
    h = json.dumps(header).encode()
    return len(h).to_bytes(4, "little") + h + raw


def decode_binary(frame):
    n = int.from_bytes(frame[:4], "little")
    return json.loads(frame[4:4 + n]), frame[4 + n:]


def simple_request(i):
    return {"inputs": [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": [i + k for k in range(16)]},
        {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [1] * 16}]}


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True, help="wss://host:port of the gateway")
    ap.add_argument("--ca-file", help="CA to check the gateway's certificate with")
    ap.add_argument("--model", default="simple")
    ap.add_argument("--count", type=int, default=10, help="requests to send (the sample model simple)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--interval", type=float, default=0, help="seconds between a task's requests")
    args = ap.parse_args()
    ctx = ssl.create_default_context(cafile=args.ca_file) if args.url.startswith("wss:") else None
    token_file = os.environ.get("HELIX_TOKEN_FILE")

    def token():
        if token_file:  # re-read on every connect: whoever refreshes it may have
            with open(token_file) as f:
                return f.read().strip()
        return os.environ["HELIX_TOKEN"]

    def event(kind, detail):
        print(f"event: {kind} {detail}", file=sys.stderr, flush=True)

    ok, errors = 0, 0
    async with HelixWS(args.url, args.model, token, ctx, on_event=event) as c:
        queue = iter(range(args.count))

        async def worker():
            nonlocal ok, errors
            for i in queue:
                try:
                    resp = await c.infer(simple_request(i))
                    out = {o["name"]: o["data"] for o in resp["outputs"]}
                    if out["OUTPUT0"] != [i + k + 1 for k in range(16)]:
                        raise AssertionError(f"request {i}: wrong answer {out['OUTPUT0']}")
                    ok += 1
                except InferError as e:
                    errors += 1
                    print(f"request {i}: {e}", file=sys.stderr)
                if args.interval:
                    await asyncio.sleep(args.interval)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        print(f"answered {ok} errors {errors} connects {c.connects}")
    return 0 if errors == 0 and ok == args.count else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
