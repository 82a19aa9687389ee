"""The calls Triton's example clients make (triton-inference-server/client,
src/python/examples) for sequences, shared memory, decoupled models and
strings, written here with the real tritonclient against a real
helix-worker serving the sample models:

  simple_grpc_sequence_sync_infer_client.py    test_sequence_sync (grpc)
  simple_http_sequence_sync_infer_client.py    test_sequence_sync (http)
  simple_grpc_sequence_stream_infer_client.py  test_sequence_stream
      each with and without their -d flag (simple_dyna_sequence and
      simple_string_dyna_sequence instead of simple_sequence)
  simple_grpc_shm_client.py                    test_shm_simple (grpc)
  simple_http_shm_client.py                    test_shm_simple (http)
  simple_grpc_shm_string_client.py             test_shm_string (grpc)
  simple_http_shm_string_client.py             test_shm_string (http)
  simple_grpc_custom_repeat.py                 test_custom_repeat
  simple_grpc/http_string_infer_client.py      test_string_infer (their
      simple_string part; their second part calls a model simple_identity
      with NUL bytes, which ONNX Runtime's C strings cannot carry)

then the bad input of issue 23: a sequence request without START for an
unknown correlation id, END twice, shared-memory regions too small,
unregistered or read past their end, ensembles with a cycle or a missing
tensor, and a decoupled model's client going away mid-stream.

Shared-memory keys carry this process's id: other suites may use Triton's
fixed keys (/input_simple, ...) on the same host at the same time.
"""

import os
import queue
import threading
import time
import uuid

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient import utils
from tritonclient.utils import InferenceServerException

from conftest import MODELS, Worker

# The clients' values: a sequence sends [first] + VALUES (or their
# negatives), START on the first request and END on the last.
VALUES = [11, 7, 5, 3, 2, 0, 1]


def client_module(protocol):
    return grpcclient if protocol == "grpc" else httpclient


def client_for(protocol, grpc_client, http_client):
    return grpc_client if protocol == "grpc" else http_client


def key(name):
    """A shared-memory key of this process (see the module docstring)."""
    return f"/helix_{os.getpid()}_{name}"


# --------------------------------------------------------------------------
# Sequences.


def sequence_models(dyna):
    """(model for the two integer ids, model for the string id) as the
    clients choose them."""
    if dyna:
        return "simple_dyna_sequence", "simple_string_dyna_sequence"
    return "simple_sequence", "simple_sequence"


def sequence_ids(dyna, offset):
    """The clients' ids: two integers, and a string that holds an integer
    for the dyna models (their CORRID is parsed) or a UUID."""
    return 1000 + offset * 2, 1001 + offset * 2, str(1002 + offset) if dyna else str(uuid.uuid4())


def expected_outputs(dyna, first, inputs, corrid):
    """What the clients check: simple_sequence answers INPUT + START; the
    dyna int model adds the correlation id at END; the string dyna model is
    an accumulator (implicit state) that adds int(corrid) at END."""
    out, total = [], 0
    for n, v in enumerate([first] + inputs):
        start, end = int(n == 0), int(n == len(inputs))
        if dyna and isinstance(corrid, str):
            total += v + end * int(corrid)
            out.append(total)
        else:
            out.append(v + start + (end * corrid if dyna else 0))
    return out


def sequence_inputs(mod, value):
    data = np.full((1, 1), value, dtype=np.int32)
    inp = mod.InferInput("INPUT", list(data.shape), "INT32")
    inp.set_data_from_numpy(data)
    return [inp], [mod.InferRequestedOutput("OUTPUT")]


def sync_sequence(client, mod, model, sequence_id, first, inputs):
    results = []
    values = [first] + inputs
    for n, v in enumerate(values):
        ins, outs = sequence_inputs(mod, v)
        r = client.infer(model, ins, outputs=outs, sequence_id=sequence_id,
                         sequence_start=n == 0, sequence_end=n == len(values) - 1)
        out = r.as_numpy("OUTPUT")
        assert out.shape == (1, 1) and out.dtype == np.int32
        results.append(int(out[0][0]))
    return results


def check_three_sequences(dyna, ids, got):
    id0, id1, sid = ids
    neg = [-v for v in VALUES]
    assert got[0] == expected_outputs(dyna, 0, VALUES, id0)
    assert got[1] == expected_outputs(dyna, 100, neg, id1)
    assert got[2] == expected_outputs(dyna, 20, neg, sid if dyna else None)


def test_expected_outputs_match_the_clients_checks():
    # The clients' own arithmetic, spelled out: no dyna, first results 1,
    # 101, 21 then the inputs echoed; dyna, 1, 101, 20 and the corrid added
    # on the last request; the string dyna model accumulates.
    assert expected_outputs(False, 0, VALUES, 1000) == [1] + VALUES
    assert expected_outputs(False, 20, [-v for v in VALUES], None) == [21] + [-v for v in VALUES]
    assert expected_outputs(True, 100, [-v for v in VALUES], 1001) == [101, -11, -7, -5, -3, -2, 0, -1 + 1001]
    assert expected_outputs(True, 20, [-v for v in VALUES], "1002") == [20, 9, 2, -3, -6, -8, -8, -9 + 1002]


@pytest.mark.parametrize("dyna", [False, True], ids=["plain", "dyna"])
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sequence_sync(grpc_client, http_client, protocol, dyna):
    client, mod = client_for(protocol, grpc_client, http_client), client_module(protocol)
    int_model, string_model = sequence_models(dyna)
    ids = sequence_ids(dyna, offset=10 if protocol == "grpc" else 20)
    neg = [-v for v in VALUES]
    got = [
        sync_sequence(client, mod, int_model, ids[0], 0, VALUES),
        sync_sequence(client, mod, int_model, ids[1], 100, neg),
        sync_sequence(client, mod, string_model, ids[2], 20, neg),
    ]
    check_three_sequences(dyna, ids, got)


@pytest.mark.parametrize("dyna", [False, True], ids=["plain", "dyna"])
def test_sequence_stream(worker, dyna):
    """All three sequences sent on one stream without waiting, request ids
    "<sequence id>_<n>"; each sequence's responses in order."""
    int_model, string_model = sequence_models(dyna)
    ids = sequence_ids(dyna, offset=30)
    neg = [-v for v in VALUES]
    plan = [(ids[0], int_model, [0] + VALUES), (ids[1], int_model, [100] + neg), (ids[2], string_model, [20] + neg)]
    responses = queue.Queue()
    with grpcclient.InferenceServerClient(worker.grpc_url) as c:
        c.start_stream(callback=lambda result, error: responses.put((result, error)), stream_timeout=60)
        for sid, model, values in plan:
            for n, v in enumerate(values):
                ins, outs = sequence_inputs(grpcclient, v)
                c.async_stream_infer(model, ins, outputs=outs, request_id=f"{sid}_{n + 1}", sequence_id=sid,
                                     sequence_start=n == 0, sequence_end=n == len(values) - 1)
        by_id = {str(sid): [] for sid, _, _ in plan}
        for _ in range(sum(len(v) for _, _, v in plan)):
            result, error = responses.get(timeout=60)
            assert error is None, error
            rid = result.get_response().id
            sid, n = rid.rsplit("_", 1)
            by_id[sid].append((int(n), int(result.as_numpy("OUTPUT")[0][0])))
        c.stop_stream()
    for sid, pairs in by_id.items():
        assert [n for n, _ in pairs] == list(range(1, len(pairs) + 1)), (sid, "out of order", pairs)
    check_three_sequences(dyna, ids, [[v for _, v in by_id[str(sid)]] for sid in ids])


# --------------------------------------------------------------------------
# System shared memory.


class Regions:
    """Shared-memory regions created here, destroyed at the end."""

    def __init__(self):
        self.handles = []

    def create(self, name, size):
        h = shm.create_shared_memory_region(name, key(name), size)
        self.handles.append(h)
        return h

    def destroy(self):
        for h in self.handles:
            shm.destroy_shared_memory_region(h)


@pytest.fixture
def regions(grpc_client):
    r = Regions()
    yield r
    grpc_client.unregister_system_shared_memory()
    r.destroy()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_shm_simple(grpc_client, http_client, regions, protocol):
    client, mod = client_for(protocol, grpc_client, http_client), client_module(protocol)
    client.unregister_system_shared_memory()
    client.unregister_cuda_shared_memory()  # the clients call it first: it must succeed
    a = np.arange(16, dtype=np.int32)
    b = np.ones(16, dtype=np.int32)
    size = a.nbytes
    out_h = regions.create("output_data", size * 2)
    client.register_system_shared_memory("output_data", key("output_data"), size * 2)
    in_h = regions.create("input_data", size * 2)
    shm.set_shared_memory_region(in_h, [a])
    shm.set_shared_memory_region(in_h, [b], offset=size)
    client.register_system_shared_memory("input_data", key("input_data"), size * 2)

    inputs = [mod.InferInput("INPUT0", [1, 16], "INT32"), mod.InferInput("INPUT1", [1, 16], "INT32")]
    inputs[0].set_shared_memory("input_data", size)
    inputs[1].set_shared_memory("input_data", size, offset=size)
    kw = {} if protocol == "grpc" else {"binary_data": True}
    outputs = [mod.InferRequestedOutput("OUTPUT0", **kw), mod.InferRequestedOutput("OUTPUT1", **kw)]
    outputs[0].set_shared_memory("output_data", size)
    outputs[1].set_shared_memory("output_data", size, offset=size)
    results = client.infer("simple", inputs, outputs=outputs)

    o0, o1 = results.get_output("OUTPUT0"), results.get_output("OUTPUT1")
    assert o0 is not None and o1 is not None
    dt = o0.datatype if protocol == "grpc" else o0["datatype"]
    shape = list(o0.shape) if protocol == "grpc" else o0["shape"]
    assert dt == "INT32" and shape == [1, 16]
    sum_ = shm.get_contents_as_numpy(out_h, utils.triton_to_np_dtype(dt), shape)
    diff = shm.get_contents_as_numpy(out_h, utils.triton_to_np_dtype(dt), shape, offset=size)
    np.testing.assert_array_equal(sum_[0], a + b)
    np.testing.assert_array_equal(diff[0], a - b)
    # Answered in the region, not in the response.
    if protocol == "grpc":
        # (Empty entries may keep raw_output_contents aligned with outputs.)
        assert not any(results.get_response().raw_output_contents)
    else:
        assert "data" not in o0 and "binary_data_size" not in o0.get("parameters", {}), o0

    status = client.get_system_shared_memory_status()
    names = [r.name for r in status.regions.values()] if protocol == "grpc" else [r["name"] for r in status]
    assert sorted(names) == ["input_data", "output_data"], status
    client.unregister_system_shared_memory()
    status = client.get_system_shared_memory_status()
    assert (len(status.regions) if protocol == "grpc" else len(status)) == 0
    assert len(shm.mapped_shared_memory_regions()) == 2


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_shm_string(grpc_client, http_client, regions, protocol):
    client, mod = client_for(protocol, grpc_client, http_client), client_module(protocol)
    client.unregister_system_shared_memory()
    client.unregister_cuda_shared_memory()
    a = np.arange(16, dtype=np.int32)
    b = np.ones(16, dtype=np.int32)

    def text(x):
        return np.array([str(v).encode() for v in x], dtype=np.object_)

    in0, in1 = utils.serialize_byte_tensor(text(a)), utils.serialize_byte_tensor(text(b))
    want_sum, want_diff = text(a + b), text(a - b)
    out0_size = utils.serialized_byte_size(utils.serialize_byte_tensor(want_sum))
    out1_size = utils.serialized_byte_size(utils.serialize_byte_tensor(want_diff))
    in0_size, in1_size = utils.serialized_byte_size(in0), utils.serialized_byte_size(in1)

    out0 = regions.create("output0_data", out0_size)
    out1 = regions.create("output1_data", out1_size)
    client.register_system_shared_memory("output0_data", key("output0_data"), out0_size)
    client.register_system_shared_memory("output1_data", key("output1_data"), out1_size)
    shm.set_shared_memory_region(regions.create("input0_data", in0_size), [in0])
    shm.set_shared_memory_region(regions.create("input1_data", in1_size), [in1])
    client.register_system_shared_memory("input0_data", key("input0_data"), in0_size)
    client.register_system_shared_memory("input1_data", key("input1_data"), in1_size)

    inputs = [mod.InferInput("INPUT0", [1, 16], "BYTES"), mod.InferInput("INPUT1", [1, 16], "BYTES")]
    inputs[0].set_shared_memory("input0_data", in0_size)
    inputs[1].set_shared_memory("input1_data", in1_size)
    kw = {} if protocol == "grpc" else {"binary_data": True}
    outputs = [mod.InferRequestedOutput("OUTPUT0", **kw), mod.InferRequestedOutput("OUTPUT1", **kw)]
    outputs[0].set_shared_memory("output0_data", out0_size)
    outputs[1].set_shared_memory("output1_data", out1_size)
    results = client.infer("simple_string", inputs, outputs=outputs)

    got = []
    for name, handle in (("OUTPUT0", out0), ("OUTPUT1", out1)):
        o = results.get_output(name)
        assert o is not None, name
        dt = o.datatype if protocol == "grpc" else o["datatype"]
        shape = list(o.shape) if protocol == "grpc" else o["shape"]
        assert dt == "BYTES" and shape == [1, 16]
        got.append(shm.get_contents_as_numpy(handle, utils.triton_to_np_dtype(dt), shape))
    assert list(got[0][0]) == list(want_sum)
    assert list(got[1][0]) == list(want_diff)
    client.unregister_system_shared_memory()
    assert len(shm.mapped_shared_memory_regions()) == 4


# --------------------------------------------------------------------------
# Decoupled: the repeat backend.


def repeat_inputs(values, delays, wait):
    ins = [grpcclient.InferInput("IN", [len(values)], "INT32"), grpcclient.InferInput("DELAY", [len(delays)], "UINT32"),
           grpcclient.InferInput("WAIT", [1], "UINT32")]
    ins[0].set_data_from_numpy(np.asarray(values, dtype=np.int32))
    ins[1].set_data_from_numpy(np.asarray(delays, dtype=np.uint32))
    ins[2].set_data_from_numpy(np.array([wait], dtype=np.uint32))
    return ins


def test_custom_repeat(worker):
    # The client's numbers: 10 values from 100, 1 s apart, then 1 s of wait.
    count, offset, delay, wait = 10, 100, 1000, 1000
    responses = queue.Queue()
    with grpcclient.InferenceServerClient(worker.grpc_url) as c:
        c.start_stream(callback=lambda result, error: responses.put((result, error)))
        t0 = time.monotonic()
        c.async_stream_infer("repeat_int32", repeat_inputs(np.arange(offset, offset + count), [delay] * count, wait),
                             outputs=[grpcclient.InferRequestedOutput("OUT")])
        got, times = [], []
        for _ in range(count):
            result, error = responses.get(timeout=30)
            assert error is None, error
            out = result.as_numpy("OUT")
            assert out.shape == (1,), out.shape
            got.append(int(out[0]))
            times.append(time.monotonic() - t0)
        c.stop_stream()
    assert got == list(range(offset, offset + count))
    # Responses as they come, not at the end: the first after about one
    # delay, the last after about ten.
    assert times[0] < 5 and times[-1] >= (count - 1) * delay / 1000, times


def test_repeat_answers_idx_and_empty_input(worker):
    responses = queue.Queue()
    with grpcclient.InferenceServerClient(worker.grpc_url) as c:
        c.start_stream(callback=lambda result, error: responses.put((result, error)))
        c.async_stream_infer("repeat_int32", repeat_inputs([7, 8, 9], [0, 0, 0], 0), request_id="three")
        rows = []
        for _ in range(3):
            result, error = responses.get(timeout=30)
            assert error is None, error
            assert result.get_response().id == "three"
            rows.append((int(result.as_numpy("OUT")[0]), int(result.as_numpy("IDX")[0])))
        assert rows == [(7, 0), (8, 1), (9, 2)]
        # Zero elements: zero responses; the stream goes on.
        c.async_stream_infer("repeat_int32", repeat_inputs([], [], 0), request_id="none")
        c.async_stream_infer("repeat_int32", repeat_inputs([5], [0], 0), request_id="after")
        result, error = responses.get(timeout=30)
        assert error is None and result.get_response().id == "after", (result, error)
        c.stop_stream()
        assert responses.empty()


def test_repeat_refused_on_unary_infer(grpc_client):
    with pytest.raises(InferenceServerException) as exc:
        grpc_client.infer("repeat_int32", repeat_inputs([1], [0], 0))
    assert "decoupled" in str(exc.value), str(exc.value)


# --------------------------------------------------------------------------
# Strings (the simple_string part of the string infer clients).


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_string_infer(grpc_client, http_client, protocol):
    client, mod = client_for(protocol, grpc_client, http_client), client_module(protocol)
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.ones((1, 16), dtype=np.int32)
    ins = [mod.InferInput("INPUT0", [1, 16], "BYTES"), mod.InferInput("INPUT1", [1, 16], "BYTES")]
    as_text = np.vectorize(lambda v: str(v).encode(), otypes=[np.object_])
    if protocol == "grpc":
        ins[0].set_data_from_numpy(as_text(a))
        ins[1].set_data_from_numpy(as_text(b))
        outs = [mod.InferRequestedOutput("OUTPUT0"), mod.InferRequestedOutput("OUTPUT1")]
    else:
        # The HTTP client sends one input binary, one JSON, and asks for one
        # output of each.
        ins[0].set_data_from_numpy(as_text(a), binary_data=True)
        ins[1].set_data_from_numpy(as_text(b), binary_data=False)
        outs = [mod.InferRequestedOutput("OUTPUT0", binary_data=True),
                mod.InferRequestedOutput("OUTPUT1", binary_data=False)]
    r = client.infer("simple_string", ins, outputs=outs)
    assert [int(x) for x in r.as_numpy("OUTPUT0")[0]] == list((a + b)[0])
    assert [int(x) for x in r.as_numpy("OUTPUT1")[0]] == list((a - b)[0])


# --------------------------------------------------------------------------
# The ensemble (no Triton client calls it; the sample's own check).


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_mlp_ensemble_equals_mlp_on_scaled_image(grpc_client, http_client, protocol):
    client, mod = client_for(protocol, grpc_client, http_client), client_module(protocol)
    image = np.random.default_rng(9).integers(0, 256, (3, 256), dtype=np.uint8)
    inp = mod.InferInput("IMAGE", [3, 256], "UINT8")
    inp.set_data_from_numpy(image)
    got = client.infer("mlp_ensemble", [inp]).as_numpy("probabilities")
    sess = ort.InferenceSession(str(MODELS / "mlp" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    (want,) = sess.run(["probabilities"], {"input": image.astype(np.float32) / np.float32(255)})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    md = http_client.get_model_metadata("mlp_ensemble")
    assert md["platform"] == "ensemble" and [i["name"] for i in md["inputs"]] == ["IMAGE"]
    stats = http_client.get_inference_statistics("mlp_ensemble")["model_stats"][0]
    assert stats["inference_stats"]["success"]["count"] >= 1, stats


# --------------------------------------------------------------------------
# Bad input.


def error_of(call):
    with pytest.raises(InferenceServerException) as exc:
        call()
    return str(exc.value)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sequence_without_start_for_unknown_id(grpc_client, http_client, protocol):
    client, mod = client_for(protocol, grpc_client, http_client), client_module(protocol)
    for model, sid in (("simple_sequence", 987654), ("simple_sequence", "never-started"),
                       ("simple_dyna_sequence", 987655)):
        ins, outs = sequence_inputs(mod, 5)
        msg = error_of(lambda: client.infer(model, ins, outputs=outs, sequence_id=sid))
        assert "START" in msg and str(sid) in msg and model in msg, msg
        assert ("INVALID_ARGUMENT" if protocol == "grpc" else "[400]") in msg, msg


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sequence_end_twice(grpc_client, http_client, protocol):
    client, mod = client_for(protocol, grpc_client, http_client), client_module(protocol)
    sid = 555000 + (1 if protocol == "grpc" else 2)
    ins, outs = sequence_inputs(mod, 3)
    assert client.infer("simple_sequence", ins, outputs=outs, sequence_id=sid, sequence_start=True,
                        sequence_end=True).as_numpy("OUTPUT")[0][0] == 4
    msg = error_of(lambda: client.infer("simple_sequence", ins, outputs=outs, sequence_id=sid, sequence_end=True))
    assert "START" in msg and str(sid) in msg, msg
    # A new sequence with the same id starts cleanly.
    assert client.infer("simple_sequence", ins, outputs=outs, sequence_id=sid, sequence_start=True,
                        sequence_end=True).as_numpy("OUTPUT")[0][0] == 4


def test_sequence_state_restarts_at_start(grpc_client):
    sid = "4242"
    ins, outs = sequence_inputs(grpcclient, 10)
    model = "simple_string_dyna_sequence"
    assert grpc_client.infer(model, ins, outputs=outs, sequence_id=sid, sequence_start=True).as_numpy("OUTPUT")[0][0] == 10
    assert grpc_client.infer(model, ins, outputs=outs, sequence_id=sid).as_numpy("OUTPUT")[0][0] == 20
    # START on a running sequence restarts it (Triton): the state is zero again.
    assert grpc_client.infer(model, ins, outputs=outs, sequence_id=sid, sequence_start=True).as_numpy("OUTPUT")[0][0] == 10
    assert grpc_client.infer(model, ins, outputs=outs, sequence_id=sid,
                             sequence_end=True).as_numpy("OUTPUT")[0][0] == 20 + 4242


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_shm_bad_regions(grpc_client, http_client, regions, protocol):
    client, mod = client_for(protocol, grpc_client, http_client), client_module(protocol)
    client.unregister_system_shared_memory()
    h = regions.create("small", 32)
    shm.set_shared_memory_region(h, [np.arange(8, dtype=np.int32)])

    # Registering more than the shared-memory object holds.
    msg = error_of(lambda: client.register_system_shared_memory("toolarge", key("small"), 4096))
    assert "toolarge" in msg or key("small") in msg, msg
    # A key naming a path.
    msg = error_of(lambda: client.register_system_shared_memory("slash", "/a/b", 32))
    assert "/a/b" in msg or "slash" in msg, msg
    # A key that no process created.
    msg = error_of(lambda: client.register_system_shared_memory("missing", key("no_such_key"), 32))
    assert "missing" in msg or "no_such_key" in msg, msg

    client.register_system_shared_memory("small", key("small"), 32)
    # The same name twice.
    msg = error_of(lambda: client.register_system_shared_memory("small", key("small"), 32))
    assert "small" in msg, msg

    def simple(in0, in1, outputs=None):
        return lambda: client.infer("simple", [in0, in1], outputs=outputs)

    def shm_input(name, region, size, offset=0):
        i = mod.InferInput(name, [1, 16], "INT32")
        i.set_shared_memory(region, size, offset=offset)
        return i

    def data_input(name):
        i = mod.InferInput(name, [1, 16], "INT32")
        i.set_data_from_numpy(np.ones((1, 16), np.int32))
        return i

    cases = {
        # 64 bytes from a 32-byte region.
        "input past the region's size": simple(shm_input("INPUT0", "small", 64), data_input("INPUT1")),
        # Offset at the region's end.
        "offset past the end": simple(shm_input("INPUT0", "small", 64, offset=32), data_input("INPUT1")),
        "unregistered region": simple(shm_input("INPUT0", "nowhere", 64), data_input("INPUT1")),
    }
    for what, call in cases.items():
        msg = error_of(call)
        region = "nowhere" if what == "unregistered region" else "small"
        assert region in msg, (what, msg)
        assert ("[StatusCode.INTERNAL]" not in msg and "[500]" not in msg), (what, msg)

    # An output region too small for the output: the error names the output.
    out = mod.InferRequestedOutput("OUTPUT0", **({} if protocol == "grpc" else {"binary_data": True}))
    out.set_shared_memory("small", 32)
    msg = error_of(simple(data_input("INPUT0"), data_input("INPUT1"), [out]))
    assert "OUTPUT0" in msg and "64" in msg, msg

    # Unregistering one that is not registered succeeds (Triton); the
    # worker still serves.
    client.unregister_system_shared_memory("never_registered")
    r = client.infer("simple", [data_input("INPUT0"), data_input("INPUT1")])
    np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), np.full((1, 16), 2, np.int32))


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_cuda_shm_register_refused_clearly(grpc_client, http_client, protocol):
    client = client_for(protocol, grpc_client, http_client)
    client.unregister_cuda_shared_memory()
    status = client.get_cuda_shared_memory_status()
    assert (len(status.regions) if protocol == "grpc" else len(status)) == 0
    msg = error_of(lambda: client.register_cuda_shared_memory("gpu", b"\x00" * 64, 0, 64))
    assert "CUDA" in msg, msg


def test_decoupled_client_disconnect_mid_stream(worker, grpc_client):
    """A client that goes away after two of twenty responses: the worker
    stops that execution (the model is free for the next stream at once,
    not after 20 x 200 ms) and keeps serving."""
    responses = queue.Queue()
    c = grpcclient.InferenceServerClient(worker.grpc_url)
    c.start_stream(callback=lambda result, error: responses.put((result, error)))
    c.async_stream_infer("repeat_int32", repeat_inputs(list(range(20)), [200] * 20, 0))
    for _ in range(2):
        result, error = responses.get(timeout=30)
        assert error is None, error
    c.stop_stream(cancel_requests=True)
    c.close()
    disconnected = time.monotonic()

    # repeat_int32 has one instance: this stream's request runs only once
    # the cancelled one has stopped.
    fresh = queue.Queue()
    with grpcclient.InferenceServerClient(worker.grpc_url) as c2:
        c2.start_stream(callback=lambda result, error: fresh.put((result, error)))
        c2.async_stream_infer("repeat_int32", repeat_inputs([1, 2], [0, 0], 0))
        got = []
        for _ in range(2):
            result, error = fresh.get(timeout=30)
            assert error is None, error
            got.append(int(result.as_numpy("OUT")[0]))
        c2.stop_stream()
    assert got == [1, 2]
    assert time.monotonic() - disconnected < 2.5, "the abandoned request kept the model busy"

    # Nothing left pending for the model, and the worker serves the rest.
    deadline = time.time() + 10
    while True:
        pending = [line for line in worker.metrics().splitlines()
                   if line.startswith('nv_inference_pending_request_count{model="repeat_int32"')]
        if pending and all(line.rsplit(" ", 1)[1] in ("0", "0.0") for line in pending):
            break
        assert time.time() < deadline, pending
        time.sleep(0.2)
    a = np.ones((1, 16), np.int32)
    ins = [grpcclient.InferInput("INPUT0", [1, 16], "INT32"), grpcclient.InferInput("INPUT1", [1, 16], "INT32")]
    ins[0].set_data_from_numpy(a)
    ins[1].set_data_from_numpy(a)
    assert grpc_client.infer("simple", ins).as_numpy("OUTPUT0")[0][0] == 2
    assert worker.proc.poll() is None


# Ensembles over simple (INT32 [16] twice -> sum, difference): input X,
# output Z.
BAD_ENSEMBLES = {
    # Each step reads what the other one writes.
    "ensemble_cycle": """
    { model_name: "simple" model_version: -1
      input_map [ { key: "INPUT0" value: "X" }, { key: "INPUT1" value: "b" } ]
      output_map [ { key: "OUTPUT0" value: "a" }, { key: "OUTPUT1" value: "Z" } ] },
    { model_name: "simple" model_version: -1
      input_map [ { key: "INPUT0" value: "a" }, { key: "INPUT1" value: "X" } ]
      output_map { key: "OUTPUT0" value: "b" } }""",
    # A step reads a tensor that nothing produces.
    "ensemble_missing_tensor": """
    { model_name: "simple" model_version: -1
      input_map [ { key: "INPUT0" value: "X" }, { key: "INPUT1" value: "nowhere" } ]
      output_map { key: "OUTPUT0" value: "Z" } }""",
    # A step names a model the repository does not have.
    "ensemble_unknown_model": """
    { model_name: "no_such_model" model_version: -1
      input_map { key: "INPUT0" value: "X" }
      output_map { key: "OUTPUT0" value: "Z" } }""",
}


def ensemble_config(name, steps):
    return f"""name: "{name}"
platform: "ensemble"
max_batch_size: 8
input [ {{ name: "X" data_type: TYPE_INT32 dims: [ 16 ] }} ]
output [ {{ name: "Z" data_type: TYPE_INT32 dims: [ 16 ] }} ]
ensemble_scheduling {{
  step [{steps}
  ]
}}
"""


def test_bad_ensembles_are_refused_naming_the_step(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for m in ("simple", "preprocess", "mlp", "mlp_ensemble"):
        (repo / m).symlink_to(MODELS / m)
    for name, steps in BAD_ENSEMBLES.items():
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(ensemble_config(name, steps))
    w = Worker(repo, ["--model-control-mode=explicit", "--load-model=*", "--strict-readiness=false"])
    try:
        h = httpclient.InferenceServerClient(w.http_url)
        index = {m["name"]: m for m in h.get_model_repository_index()}
        assert index["mlp_ensemble"]["state"] == "READY", index["mlp_ensemble"]
        for name in BAD_ENSEMBLES:
            assert index[name]["state"] == "UNAVAILABLE", index[name]
            assert "step" in index[name]["reason"], index[name]
        assert "cycle" in index["ensemble_cycle"]["reason"], index["ensemble_cycle"]
        assert "nowhere" in index["ensemble_missing_tensor"]["reason"], index["ensemble_missing_tensor"]
        assert "no_such_model" in index["ensemble_unknown_model"]["reason"], index["ensemble_unknown_model"]
        msg = error_of(lambda: h.load_model("ensemble_cycle"))
        assert "cycle" in msg, msg
        # A well-formed ensemble over simple works next to them.
        good = ensemble_config("ensemble_ok", """
    { model_name: "simple" model_version: -1
      input_map [ { key: "INPUT0" value: "X" }, { key: "INPUT1" value: "X" } ]
      output_map { key: "OUTPUT0" value: "Z" } }""")
        (repo / "ensemble_ok" / "1").mkdir(parents=True)
        (repo / "ensemble_ok" / "config.pbtxt").write_text(good)
        h.load_model("ensemble_ok")
        x = np.arange(16, dtype=np.int32).reshape(1, 16)
        inp = httpclient.InferInput("X", [1, 16], "INT32")
        inp.set_data_from_numpy(x)
        np.testing.assert_array_equal(h.infer("ensemble_ok", [inp]).as_numpy("Z"), 2 * x)
    finally:
        w.stop()


def test_sequences_from_many_threads(grpc_client):
    """Sixteen sequences at once on simple_sequence (direct: eight slots of
    one instance; the others wait for a slot) and on the dyna models: each
    sequence's answers are its own."""
    errors = []

    def run(i):
        try:
            model = ("simple_sequence", "simple_dyna_sequence")[i % 2]
            sid = 700000 + i
            vals = [i * 10 + k for k in range(5)]
            got = sync_sequence(grpc_client, grpcclient, model, sid, vals[0], vals[1:])
            assert got == expected_outputs(model != "simple_sequence", vals[0], vals[1:], sid), (model, got)
            sid = str(800000 + i)
            got = sync_sequence(grpc_client, grpcclient, "simple_string_dyna_sequence", sid, vals[0], vals[1:])
            assert got == expected_outputs(True, vals[0], vals[1:], sid), got
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[0]
