#!/usr/bin/env python3
"""A reconnecting HelixFlow WebSocket inference client (docs/websocket.md,
"Clients"): a command line over the Python SDK's helixflow.ws
(sdk/python, `pip install ./sdk/python`), where the client lives.

    python docs/examples/ws_client.py --url wss://127.0.0.1:8443 --ca-file .helix/pki/ca.crt \
        --model simple --count 100          # token from $HELIX_TOKEN (or $HELIX_TOKEN_FILE)

What helixflow.ws.HelixWS does:
- the credential in Sec-WebSocket-Protocol (`helix.bearer.<token>` beside
  `kserve.v2.helix`), as a browser must send it; a Python client may send
  `Authorization: Bearer` instead (bearer_header=True);
- answers matched by `id`, in any order;
- reconnection with exponential backoff and full jitter after a close
  (1012 when a worker drains, 1006 on a network fault, 1008 when the token
  expired: a fresh token is asked for on every connect), and every request
  not yet answered sent again on the new connection, so nothing is lost.
  Requests must therefore be safe to run twice (inference is).

Without --url and a token it uses the SDK's defaults: HELIX_HTTPS_URL,
HELIX_CA_FILE and the HELIX_CLIENT_ID / HELIX_CLIENT_SECRET client, whose
token the SDK refreshes across reconnects.
"""

import argparse
import asyncio
import os
import pathlib
import ssl
import sys

try:
    import helixflow.ws as _ws
except ImportError:  # run from a checkout without the SDK installed
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "sdk" / "python" / "src"))
    import helixflow.ws as _ws

from helixflow.ws import (  # noqa: E402  (what tests/websocket imports from here)
    FATAL_CLOSE,
    PROTOCOL,
    TOKEN_PREFIX,
    HelixWS,
    InferError,
    decode_binary,
    encode_binary,
    simple_request,
)

__all__ = ["FATAL_CLOSE", "PROTOCOL", "TOKEN_PREFIX", "HelixWS", "InferError", "decode_binary", "encode_binary",
           "simple_request"]


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="wss://host:port of the gateway (default: HELIX_HTTPS_URL)")
    ap.add_argument("--ca-file", help="CA to check the gateway's certificate with")
    ap.add_argument("--model", default="simple")
    ap.add_argument("--count", type=int, default=10, help="requests to send (the sample model simple)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--interval", type=float, default=0, help="seconds between a task's requests")
    args = ap.parse_args()
    token_file = os.environ.get("HELIX_TOKEN_FILE")

    def token():
        if token_file:  # re-read on every connect: whoever refreshes it may have
            with open(token_file) as f:
                return f.read().strip()
        return os.environ["HELIX_TOKEN"]

    def event(kind, detail):
        print(f"event: {kind} {detail}", file=sys.stderr, flush=True)

    ok, errors = 0, 0
    if args.url and (token_file or os.environ.get("HELIX_TOKEN")):
        ctx = ssl.create_default_context(cafile=args.ca_file) if args.url.startswith("wss:") else None
        client = HelixWS(args.url, args.model, token, ctx, on_event=event)
    else:  # the SDK's defaults: the HELIX_* environment, a refreshed client token
        client = _ws.connect(args.model, url=args.url, ca_file=args.ca_file, on_event=event)
    async with client as c:
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
