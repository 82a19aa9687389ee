"""WebSocket inference through Envoy (docs/websocket.md): the protocol,
authentication on the upgrade, limits per message on WebSocket and on
gRPC streams, expiry, drain and bad input. tests/helixstack.py starts the stack."""

import asyncio
import json
import os
import queue
import shutil
import struct
import subprocess
import sys
import threading
import time

import ml_dtypes
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from helixstack import ROOT, TOKEN_LIFETIME, rss_kib
from ws_client import PROTOCOL, TOKEN_PREFIX, HelixWS, InferError, decode_binary, encode_binary, simple_request

DTYPES = {"BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
          "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
          "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BF16": ml_dtypes.bfloat16}


def run(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def path(model, version=None):
    return f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer/ws"


async def connect(stack, client, model="simple", header=False, token=None, **kw):
    tok = token if token is not None else client.token()
    kw.setdefault("max_size", 64 << 20)
    if header:
        return await websockets.connect(stack.url + path(model), ssl=stack.ssl, subprotocols=[PROTOCOL],
                                        additional_headers={"Authorization": "Bearer " + tok}, **kw)
    return await websockets.connect(stack.url + path(model), ssl=stack.ssl, subprotocols=[PROTOCOL, TOKEN_PREFIX + tok], **kw)


async def answers(ws, n, timeout=30):
    """Reads n answers; returns id -> answer (a dict, or (header, raw) for
    binary); answers with id null are listed under None."""
    got = {None: []}
    async with asyncio.timeout(timeout):
        for _ in range(n):
            m = await ws.recv()
            if isinstance(m, bytes):
                h, raw = decode_binary(m)
                rid, a = h.get("id"), (h, raw)
            else:
                a = json.loads(m)
                rid = a.get("id")
            if rid is None:
                got[None].append(a)
            else:
                got[rid] = a
    return got


def out_of(answer, name):
    return next(o for o in answer["outputs"] if o["name"] == name)


# --- the protocol -----------------------------------------------------------

@pytest.mark.parametrize("header", [False, True], ids=["subprotocol-token", "authorization-header"])
def test_json_round_trip(stack, clients, header):
    async def go():
        async with await connect(stack, clients["all"], header=header) as ws:
            # The worker speaks kserve.v2.helix; the token offered beside it is
            # never selected (helix-authz takes it out before the worker).
            assert ws.subprotocol == PROTOCOL
            await ws.send(json.dumps(dict(simple_request(3), id="a-1")))
            a = (await answers(ws, 1))["a-1"]
            assert a["model_name"] == "simple"
            assert out_of(a, "OUTPUT0")["data"] == [3 + k + 1 for k in range(16)]
            assert out_of(a, "OUTPUT1")["data"] == [3 + k - 1 for k in range(16)]
    run(go())


def identity_feeds():
    rng = np.random.default_rng(16)
    feeds = {}
    for dt, np_t in DTYPES.items():
        if dt == "BOOL":
            arr = rng.integers(0, 2, 5).astype(np.bool_)
        elif dt == "BF16":
            arr = np.array([0.0, -1.5, 2.0, 1024.0, 0.0078125], dtype=np_t)
        elif dt.startswith("FP"):
            arr = (rng.standard_normal(5) * 100).astype(np_t)
        else:
            info = np.iinfo(np_t)
            arr = np.array([info.min, info.max, 0, 1, info.max // 3], dtype=np_t)
        feeds[dt] = arr
    # Five elements like the others (the model's outputs take their first
    # dimension from the inputs): text for the JSON form, any bytes but NUL
    # in the binary form.
    feeds["BYTES"] = [b"", b"a", "\u00fcn\u00ef".encode(), b"z" * 300, b"\x01\xff binary"]
    feeds["BYTES_TEXT"] = [b"", b"a", "\u00fcn\u00ef".encode(), b"z" * 300, b"{json}"]
    return feeds


def input_name(dt):
    return "IN_" + ("BYTES" if dt == "BYTES" else dt)


def test_every_datatype_json(stack, clients):
    feeds = identity_feeds()
    inputs = []
    for dt, arr in feeds.items():
        if dt == "BYTES":
            continue
        if dt == "BYTES_TEXT":
            dt, data = "BYTES", [b.decode() for b in arr]
        elif dt == "BF16":
            data = arr.astype(np.float32).tolist()
        else:
            data = arr.tolist()
        inputs.append({"name": input_name(dt), "datatype": dt, "shape": [len(data)], "data": data})

    async def go():
        async with await connect(stack, clients["all"], "identity_all") as ws:
            await ws.send(json.dumps({"id": "types", "inputs": inputs}))
            a = (await answers(ws, 1))["types"]
            assert "error" not in a, a
            for inp in inputs:
                o = out_of(a, inp["name"].replace("IN_", "OUT_"))
                assert o["datatype"] == inp["datatype"], inp["name"]
                assert o["shape"] == inp["shape"], inp["name"]
                if inp["datatype"].startswith(("FP", "BF")):
                    np.testing.assert_allclose(np.array(o["data"], dtype=np.float64),
                                               np.array(inp["data"], dtype=np.float64), rtol=1e-3, err_msg=inp["name"])
                else:
                    assert o["data"] == inp["data"], inp["name"]
    run(go())


def raw_of(dt, arr):
    if dt == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in arr)
    return np.ascontiguousarray(arr).tobytes()


def test_every_datatype_binary(stack, clients):
    """Triton's binary form: the header's inputs name binary_data_size, the
    raw bytes follow in input order; outputs asked as binary_data come back
    in a binary frame, split by their binary_data_size in output order."""
    feeds = identity_feeds()
    del feeds["BYTES_TEXT"]
    raws, inputs, outputs = [], [], []
    for dt, arr in feeds.items():
        raw = raw_of(dt, arr)
        raws.append(raw)
        inputs.append({"name": input_name(dt), "datatype": dt, "shape": [len(arr)], "parameters": {"binary_data_size": len(raw)}})
        outputs.append({"name": input_name(dt).replace("IN_", "OUT_"), "parameters": {"binary_data": True}})

    async def go():
        async with await connect(stack, clients["all"], "identity_all") as ws:
            await ws.send(encode_binary({"id": "bin", "inputs": inputs, "outputs": outputs}, b"".join(raws)))
            got = (await answers(ws, 1))["bin"]
            assert isinstance(got, tuple), f"a text answer to a binary request asking binary outputs: {got}"
            header, raw = got
            off = 0
            by_name = {}
            for o in header["outputs"]:
                n = o["parameters"]["binary_data_size"]
                by_name[o["name"]] = raw[off:off + n]
                off += n
            assert off == len(raw), "binary_data_size does not add up to the frame"
            for dt, want in zip(feeds, raws):
                assert by_name[input_name(dt).replace("IN_", "OUT_")] == want, dt
    run(go())


def test_binary_request_text_answer(stack, clients):
    """A binary request that asks no binary output is answered in JSON."""
    x = np.arange(16, dtype=np.int32).reshape(1, 16)
    y = np.ones((1, 16), dtype=np.int32)
    hdr = {"id": "b2t", "inputs": [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 64}},
        {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 64}}]}

    async def go():
        async with await connect(stack, clients["all"]) as ws:
            await ws.send(encode_binary(hdr, x.tobytes() + y.tobytes()))
            a = (await answers(ws, 1))["b2t"]
            assert isinstance(a, dict), a
            assert out_of(a, "OUTPUT0")["data"] == (x + y).ravel().tolist()
    run(go())


def test_out_of_order_answers_match_ids(stack, clients):
    """Many requests in flight on one connection, big batches beside small
    ones: every answer carries its request's id and that request's result,
    whatever order they come in."""
    rng = np.random.default_rng(5)
    reqs = {}
    for i in range(48):
        rows = int(rng.choice([1, 1, 2, 64, 200]))
        x = rng.standard_normal((rows, 256)).astype(np.float32)
        reqs[f"r{i}"] = x

    async def go():
        async with await connect(stack, clients["all"], "mlp") as ws:
            for rid, x in reqs.items():
                await ws.send(json.dumps({"id": rid, "inputs": [
                    {"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}))
            order = []
            got = {}
            async with asyncio.timeout(60):
                while len(got) < len(reqs):
                    a = json.loads(await ws.recv())
                    order.append(a["id"])
                    got[a["id"]] = a
            return order, got

    order, got = run(go())
    assert set(got) == set(reqs)
    for rid, x in reqs.items():
        a = got[rid]
        assert "error" not in a, a
        o = out_of(a, "probabilities")
        assert o["shape"] == [x.shape[0], 10], rid
        p = np.array(o["data"]).reshape(x.shape[0], 10)
        np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-4)
    print("answer order differed from send order:", order != list(reqs))


def test_error_answers_one_message_and_keeps_the_connection(stack, clients):
    bad = [
        ("wrong-name", {"inputs": [{"name": "NOPE", "datatype": "INT32", "shape": [1, 16], "data": [0] * 16}]}),
        ("wrong-type", {"inputs": [
            {"name": "INPUT0", "datatype": "FP32", "shape": [1, 16], "data": [0.5] * 16},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [0] * 16}]}),
        ("wrong-shape", {"inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [1, 15], "data": [0] * 15},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [0] * 16}]}),
        ("data-short", {"inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "data": [0] * 3},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "data": [0] * 16}]}),
        ("no-inputs", {"inputs": []}),
    ]

    async def go():
        async with await connect(stack, clients["all"]) as ws:
            for rid, body in bad:
                await ws.send(json.dumps(dict(body, id=rid)))
            await ws.send("{this is not json")
            await ws.send(json.dumps(simple_request(1)))  # no id
            await ws.send(json.dumps(dict(simple_request(1), id="x" * 129)))  # id over 128 bytes
            await ws.send(json.dumps(["an", "array"]))
            await ws.send(json.dumps(dict(simple_request(7), id="good")))
            got = await answers(ws, len(bad) + 5)
            for rid, _ in bad:
                assert got[rid].get("code") == 400 and got[rid]["error"], (rid, got[rid])
            # Invalid JSON, a missing, too long or unparsable id: answered
            # with id null.
            nulls = got[None]
            assert len(nulls) == 4 and all(a.get("code") == 400 and a.get("error") for a in nulls), got
            assert out_of(got["good"], "OUTPUT0")["data"] == [7 + k + 1 for k in range(16)]
            # Still open.
            await ws.send(json.dumps(dict(simple_request(8), id="after")))
            assert "outputs" in (await answers(ws, 1))["after"]
    run(go())


def test_unknown_model(stack, clients):
    """A model nobody serves: refused on the upgrade (403/404), or each
    message answered 404 with the connection kept."""
    async def go():
        try:
            ws = await connect(stack, clients["all"], "no_such_model")
        except InvalidStatus as e:
            assert e.response.status_code in (403, 404), e.response.status_code
            return
        async with ws:
            await ws.send(json.dumps(dict(simple_request(1), id="u1")))
            a = (await answers(ws, 1))["u1"]
            assert a.get("code") == 404 and "no_such_model" in a["error"], a
            await ws.send(json.dumps(dict(simple_request(1), id="u2")))
            assert (await answers(ws, 1))["u2"].get("code") == 404
    run(go())


def test_unknown_version(stack, clients):
    """A version the model lacks: refused on the upgrade (404) or answered
    404 per message."""
    async def go():
        tok = clients["all"].token()
        try:
            ws = await websockets.connect(stack.url + path("simple", "99"), ssl=stack.ssl, subprotocols=[PROTOCOL, TOKEN_PREFIX + tok])
        except InvalidStatus as e:
            assert e.response.status_code == 404
            return
        async with ws:
            await ws.send(json.dumps(dict(simple_request(1), id="v99")))
            a = (await answers(ws, 1))["v99"]
            assert a.get("code") == 404, a
    run(go())


# --- authentication on the upgrade -----------------------------------------

def test_upgrade_without_a_credential_is_401(stack):
    async def go():
        with pytest.raises(InvalidStatus) as e:
            await websockets.connect(stack.url + path("simple"), ssl=stack.ssl, subprotocols=[PROTOCOL])
        assert e.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as e:
            await websockets.connect(stack.url + path("simple"), ssl=stack.ssl, subprotocols=[PROTOCOL, TOKEN_PREFIX + "not.a.token"])
        assert e.value.response.status_code == 401
    run(go())


def test_scope_per_model(stack, clients):
    async def go():
        # models:simple:infer reaches simple, not mlp.
        async with await connect(stack, clients["simple_only"], "simple") as ws:
            await ws.send(json.dumps(dict(simple_request(0), id="ok")))
            assert "outputs" in (await answers(ws, 1))["ok"]
        with pytest.raises(InvalidStatus) as e:
            await connect(stack, clients["simple_only"], "mlp")
        assert e.value.response.status_code == 403
        # models:read alone infers nothing.
        with pytest.raises(InvalidStatus) as e:
            await connect(stack, clients["read_only"], "simple")
        assert e.value.response.status_code == 403
    run(go())


# --- limits per message -----------------------------------------------------

def test_free_plan_throttled_inside_one_websocket(stack, clients):
    """The free plan allows 5 requests per second per model: 30 messages at
    once on one connection get some answers and 429s for the rest, and the
    connection stays open for the next second's messages."""
    async def go():
        async with await connect(stack, clients["free"]) as ws:
            for i in range(30):
                await ws.send(json.dumps(dict(simple_request(i), id=f"f{i}")))
            got = await answers(ws, 30)
            assert not got[None], got[None]
            answered = [a for k, a in got.items() if k is not None]
            ok = [a for a in answered if "outputs" in a]
            limited = [a for a in answered if a.get("code") == 429]
            assert len(ok) + len(limited) == 30, got
            assert 1 <= len(ok) <= 12, f"{len(ok)} answered of 30 on a 5/s plan"
            assert len(limited) >= 18
            await asyncio.sleep(1.5)
            await ws.send(json.dumps(dict(simple_request(1), id="later")))
            assert "outputs" in (await answers(ws, 1))["later"]
    run(go())


def test_free_plan_throttled_inside_one_grpc_stream(stack, clients):
    """ModelStreamInfer counts each message: RESOURCE_EXHAUSTED answers that
    message, the stream goes on."""
    results = queue.Queue()
    c = grpcclient.InferenceServerClient(stack.gateway, ssl=True, root_certificates=stack.ca_file)
    try:
        c.start_stream(callback=lambda result, error: results.put((result, error)),
                       headers={"authorization": "Bearer " + clients["free"].token()})

        def send(i):
            a = grpcclient.InferInput("INPUT0", [1, 16], "INT32")
            a.set_data_from_numpy(np.full((1, 16), i, dtype=np.int32))
            b = grpcclient.InferInput("INPUT1", [1, 16], "INT32")
            b.set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
            c.async_stream_infer("simple", [a, b], request_id=str(i))

        for i in range(30):
            send(i)
        got = [results.get(timeout=30) for _ in range(30)]
        ok = [r for r, e in got if e is None]
        limited = [e for r, e in got if e is not None and "RESOURCE_EXHAUSTED" in str(e)]
        others = [e for r, e in got if e is not None and "RESOURCE_EXHAUSTED" not in str(e)]
        assert not others, others
        assert 1 <= len(ok) <= 12, f"{len(ok)} answered of 30 on a 5/s plan"
        assert len(limited) >= 18
        time.sleep(1.5)
        send(100)
        r, e = results.get(timeout=30)
        assert e is None, e
        assert r.as_numpy("OUTPUT0").ravel().tolist() == [101] * 16
    finally:
        c.stop_stream()
        c.close()


# --- connection management --------------------------------------------------

def test_token_expiry_closes_1008(stack, clients):
    async def go():
        t0 = time.monotonic()
        async with await connect(stack, clients["all"]) as ws:
            await ws.send(json.dumps(dict(simple_request(1), id="before")))
            assert "outputs" in (await answers(ws, 1))["before"]
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(TOKEN_LIFETIME + 15):
                    while True:
                        await ws.recv()
            assert ws.close_code == 1008, (ws.close_code, ws.close_reason)
        assert time.monotonic() - t0 <= TOKEN_LIFETIME + 10
    run(go(), timeout=TOKEN_LIFETIME + 40)


def test_drain_closes_1012_and_the_example_client_loses_nothing(stack, clients):
    """docs/examples/ws_client.py sends 900 requests, 4 in flight, while each
    worker in turn drains (1012) and comes back: it reconnects with backoff,
    sends the unanswered ids again, and every request is answered right."""
    tok_file = ROOT / ".artifacts" / "ws-token"
    tok_file.parent.mkdir(exist_ok=True)
    tok_file.write_text(clients["all"].token())
    # What a real client's refresher does: the tokens live TOKEN_LIFETIME,
    # and the client reads the file on every connect.
    stop_refresh = threading.Event()

    def refresh():
        while not stop_refresh.wait(TOKEN_LIFETIME / 4):
            tmp = tok_file.with_suffix(".tmp")
            tmp.write_text(clients["all"].token())
            tmp.replace(tok_file)

    refresher = threading.Thread(target=refresh, daemon=True)
    refresher.start()
    env = dict(os.environ, HELIX_TOKEN_FILE=str(tok_file))
    p = subprocess.Popen([sys.executable, str(ROOT / "docs" / "examples" / "ws_client.py"), "--url", stack.url,
                          "--ca-file", stack.ca_file, "--count", "900", "--concurrency", "4", "--interval", "0.1"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        for w in stack.info["workers"]:
            stack.control("stop", w)  # SIGTERM: the worker drains
            stack.control("start", w)
            time.sleep(3)  # registered again and healthy in Envoy before the other drains
        out, err = p.communicate(timeout=90)
    finally:
        stop_refresh.set()
        if p.poll() is None:
            p.kill()
        tok_file.unlink(missing_ok=True)
    assert p.returncode == 0, f"{out}\n{err}"
    assert "answered 900 errors 0" in out, out
    assert "event: closed 1012" in err, err
    assert int(out.split("connects ")[1]) >= 2, out


def test_frame_over_the_limit_closes_1009(stack, clients):
    async def go():
        async with await connect(stack, clients["all"], "identity_all") as ws:
            big = json.dumps({"id": "big", "inputs": [{"name": "IN_BYTES", "datatype": "BYTES", "shape": [1],
                                                       "data": ["x" * (16 << 20)]}]})
            try:
                await ws.send(big)
                async with asyncio.timeout(30):
                    while True:
                        await ws.recv()
            except ConnectionClosed:
                pass
            assert ws.close_code == 1009, (ws.close_code, ws.close_reason)
    run(go())


def test_binary_lengths_that_lie(stack, clients):
    good_hdr = {"inputs": [
        {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 64}},
        {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 64}}]}
    h = json.dumps(dict(good_hdr, id="hdr-long")).encode()
    frames = {
        # The header length points past the frame's end.
        "hdr-long": struct.pack("<I", len(h) + 1000) + h + b"\0" * 128,
        # binary_data_size promises more than follows.
        "short": encode_binary(dict(good_hdr, id="short"), b"\0" * 100),
        # And less.
        "long": encode_binary(dict(good_hdr, id="long"), b"\0" * 200),
        # A size that disagrees with the shape.
        "shape": encode_binary({"id": "shape", "inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 60}},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 68}}]}, b"\0" * 128),
        # A negative size.
        "negative": encode_binary({"id": "negative", "inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": -64}},
            {"name": "INPUT1", "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 192}}]}, b"\0" * 128),
    }

    async def go():
        async with await connect(stack, clients["all"]) as ws:
            for f in frames.values():
                await ws.send(f)
            await ws.send(b"\x01\x00")  # shorter than the length prefix
            await ws.send(struct.pack("<I", 0xFFFFFFFF))  # 4 GiB header
            await ws.send(struct.pack("<I", 5) + b"{nope")  # header not JSON
            ok = np.arange(16, dtype=np.int32).tobytes()
            await ws.send(encode_binary(dict(good_hdr, id="fine"), ok + ok))
            got = {}
            async with asyncio.timeout(30):
                while "fine" not in got or len(got) < 6:
                    m = await ws.recv()
                    a = decode_binary(m)[0] if isinstance(m, bytes) else json.loads(m)
                    got.setdefault(a.get("id"), []).append(a)
            for rid in ("short", "long", "shape", "negative"):
                assert got[rid][0].get("code") == 400, (rid, got[rid])
            nulls = got.get(None, []) + got.get("hdr-long", [])
            assert len(nulls) >= 4 and all(a.get("code") == 400 for a in nulls), got
            assert "outputs" in got["fine"][0], got["fine"]
    run(go())


def worker_rss(stack):
    pids = stack.pids()
    return sum(rss_kib(pids[w]) for w in stack.info["workers"] if w in pids)


def test_a_reader_that_never_reads_holds_memory_bounded(stack, clients):
    """A client sends requests of about 850 KiB whose answers echo as much,
    and never reads one: the worker stops reading past its in-flight bound,
    so the client's sends block, and the workers' memory stays bounded;
    another client is served meanwhile."""
    n = 16 << 10
    inputs, raws = [], []
    for dt, np_t in DTYPES.items():
        raw = np.zeros(n, dtype=np_t).tobytes()
        inputs.append({"name": input_name(dt), "datatype": dt, "shape": [n], "parameters": {"binary_data_size": len(raw)}})
        raws.append(raw)
    raw = struct.pack("<I", 0) * n  # n empty strings
    inputs.append({"name": "IN_BYTES", "datatype": "BYTES", "shape": [n], "parameters": {"binary_data_size": len(raw)}})
    raws.append(raw)
    raw = b"".join(raws)
    hdr = {"inputs": inputs, "outputs": [{"name": i["name"].replace("IN_", "OUT_"), "parameters": {"binary_data": True}} for i in inputs]}
    limit = 1000

    async def go():
        # The request is answered: the sizes are right.
        async with await connect(stack, clients["all"], "identity_all") as ws:
            await ws.send(encode_binary(dict(hdr, id="check"), raw))
            a = (await answers(ws, 1))["check"]
            assert isinstance(a, tuple) and len(a[1]) == len(raw), a if isinstance(a, dict) else a[0]
        before = worker_rss(stack)
        # max_queue=1: the client library stops reading the socket too.
        ws = await connect(stack, clients["all"], "identity_all", max_queue=1, write_limit=1 << 20)
        sent = 0
        try:
            for i in range(limit):
                await asyncio.wait_for(ws.send(encode_binary(dict(hdr, id=str(i)), raw)), 3)
                sent += 1
        except asyncio.TimeoutError:
            pass
        await asyncio.sleep(1)
        grown_mib = (worker_rss(stack) - before) / 1024
        async with await connect(stack, clients["all"]) as other:
            await other.send(json.dumps(dict(simple_request(2), id="other")))
            assert "outputs" in (await answers(other, 1))["other"]
        ws.transport.abort()
        return sent, grown_mib

    sent, grown_mib = run(go(), timeout=120)
    print(f"{sent} requests of {len(raw) >> 10} KiB sent before the sends blocked; the workers grew {grown_mib:.0f} MiB")
    assert sent < limit, "every send went through: nothing pushed back"
    assert grown_mib < 300, f"the workers grew {grown_mib:.0f} MiB for a client that never reads"


def test_abrupt_disconnects_mid_batch(stack, clients):
    """Connections cut (no close frame) with batches in flight: the workers
    live on and serve the next client."""
    pids = stack.pids()
    rng = np.random.default_rng(9)
    x = rng.standard_normal((64, 256)).astype(np.float32).ravel().tolist()

    async def one(i):
        ws = await connect(stack, clients["all"], "mlp")
        for k in range(32):
            await ws.send(json.dumps({"id": f"{i}-{k}", "inputs": [{"name": "input", "datatype": "FP32", "shape": [64, 256], "data": x}]}))
        ws.transport.abort()

    async def go():
        await asyncio.gather(*(one(i) for i in range(6)))
        await asyncio.sleep(1)
        async with await connect(stack, clients["all"], "mlp") as ws:
            await ws.send(json.dumps({"id": "after", "inputs": [{"name": "input", "datatype": "FP32", "shape": [64, 256], "data": x}]}))
            assert "outputs" in (await answers(ws, 1))["after"]
    run(go())
    now = stack.pids()
    for w in stack.info["workers"]:
        assert now.get(w) == pids.get(w), f"{w} restarted:\n{stack.log_tail(w)}"


# --- credentials --------------------------------------------------------------

def test_api_key_in_the_subprotocol(stack):
    """An API key travels in helix.bearer.<key> as a token does."""
    c = stack.client(f"ws-key-{time.time_ns()}", "models:infer")
    key = json.loads(stack.helixctl("apikeys", "create", "--client", c.id, "--name", "ws", "--output", "json"))["key"]

    async def go():
        async with await connect(stack, c, token=key) as ws:
            await ws.send(json.dumps(dict(simple_request(4), id="k")))
            assert "outputs" in (await answers(ws, 1))["k"]
    run(go())


def test_a_disabled_clients_connections_close(stack):
    """Disabling a client closes its idle WebSocket with 1008 within the
    worker's re-check interval (10 s), and ends its gRPC stream (at the
    worker's re-check or the next message)."""
    c = stack.client(f"ws-revoked-{time.time_ns()}", "models:infer")
    tok = c.token()
    results = queue.Queue()
    g = grpcclient.InferenceServerClient(stack.gateway, ssl=True, root_certificates=stack.ca_file)

    def send(i):
        a = grpcclient.InferInput("INPUT0", [1, 16], "INT32")
        a.set_data_from_numpy(np.full((1, 16), i, dtype=np.int32))
        b = grpcclient.InferInput("INPUT1", [1, 16], "INT32")
        b.set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
        g.async_stream_infer("simple", [a, b], request_id=str(i))

    async def go():
        async with await connect(stack, c, token=tok) as ws:
            await ws.send(json.dumps(dict(simple_request(1), id="before")))
            assert "outputs" in (await answers(ws, 1))["before"]
            g.start_stream(callback=lambda result, error: results.put((result, error)), headers={"authorization": "Bearer " + tok})
            send(1)
            r, e = results.get(timeout=30)
            assert e is None, e
            stack.helixctl("clients", "update", c.id, "--disable")
            t0 = time.monotonic()
            with pytest.raises(ConnectionClosed):
                async with asyncio.timeout(20):
                    while True:
                        await ws.recv()
            took = time.monotonic() - t0
            assert ws.close_code == 1008, (ws.close_code, ws.close_reason)
            assert took <= 15, f"closed {took:.1f} s after the client was disabled"
            # The stream ends too: at the worker's own re-check, or at the
            # next message.
            try:
                send(2)
            except InferenceServerException:
                pass  # already ended; the callback has the reason
            r, e = results.get(timeout=30)
            assert e is not None and any(s in str(e) for s in ("PERMISSION_DENIED", "UNAUTHENTICATED", "revoked", "disabled")), (r, e)
    try:
        run(go(), timeout=60)
    finally:
        g.stop_stream()
        g.close()


def test_an_id_may_be_used_again_once_answered(stack, clients):
    """Ids are unique among the messages in flight only: a client may send
    an id again as soon as its answer arrived."""
    async def go():
        async with await connect(stack, clients["all"]) as ws:
            for i in range(100):
                await ws.send(json.dumps(dict(simple_request(i), id="same")))
                a = (await answers(ws, 1))["same"]
                assert "outputs" in a, (i, a)
    run(go())


def test_the_browser_example_runs(stack, clients, tmp_path):
    """The browser JavaScript of docs/websocket.md, run by Node (whose
    WebSocket is the browser's API): the token in the subprotocol, answers
    matched by id."""
    node = shutil.which("node")
    version = (0, 0)
    if node:
        v = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip().lstrip("v").split(".")
        version = (int(v[0]), int(v[1]))
    if version < (20, 10):
        # Node's WebSocket came in 20.10 (behind a flag until 22); Debian
        # 12's nodejs is 18. The image the tests run on has 20 (nodesource).
        # A missing dependency fails, never skips (make deps's machine has it).
        pytest.fail(f"node with a WebSocket (20.10 or later) is missing (found {node} {version})", pytrace=False)
    flags = [] if version >= (22, 0) else ["--experimental-websocket"]
    tok = tmp_path / "token"
    tok.write_text(clients["all"].token())
    out = subprocess.run([node, *flags, str(ROOT / "tests" / "websocket" / "browser_example.mjs"), str(ROOT / "docs" / "websocket.md"),
                          stack.url, "40"], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, HELIX_TOKEN_FILE=str(tok), NODE_EXTRA_CA_CERTS=stack.ca_file))
    assert out.returncode == 0 and "answered 40" in out.stdout, out.stdout + out.stderr


# --- the OpenAPI description ------------------------------------------------

def test_openapi_describes_the_upgrade(stack, clients):
    """api/inference.yaml is valid OpenAPI 3.1, and the upgrade's answers
    (101 with kserve.v2.helix, 401, 403) are among those it documents."""
    from openapi_spec_validator import OpenAPIV31SpecValidator
    from openapi_spec_validator.readers import read_from_filename

    doc, _ = read_from_filename(str(ROOT / "api" / "inference.yaml"))
    assert [e.message for e in OpenAPIV31SpecValidator(doc).iter_errors()] == []
    op = doc["paths"]["/v2/models/{model}/infer/ws"]["get"]
    documented = set(op["responses"])
    assert doc["paths"]["/v2/models/{model}/versions/{version}/infer/ws"]["get"]["responses"] == op["responses"]

    async def go():
        async with await connect(stack, clients["simple_only"], "simple") as ws:
            assert "101" in documented
            assert ws.subprotocol == op["responses"]["101"]["headers"]["Sec-WebSocket-Protocol"]["schema"]["const"]
        for client, model, status in ((None, "simple", 401), (clients["simple_only"], "mlp", 403)):
            with pytest.raises(InvalidStatus) as e:
                if client is None:
                    await websockets.connect(stack.url + path(model), ssl=stack.ssl, subprotocols=[PROTOCOL])
                else:
                    await connect(stack, client, model)
            assert e.value.response.status_code == status
            assert str(status) in documented
    run(go())
