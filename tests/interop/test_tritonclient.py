"""tritonclient (gRPC and HTTP) against helix-worker, outputs checked
against ONNX Runtime's Python package on the same inputs."""

import json
import queue
import urllib.request

import ml_dtypes
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from conftest import MODELS

PROTOCOLS = ["grpc", "http", "http_json"]

NUMPY_TYPES = {
    "BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}


def reference(model, feeds):
    """Runs the same ONNX file in ONNX Runtime's Python package."""
    sess = ort.InferenceSession(str(MODELS / model / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def infer(clients, protocol, model, arrays, outputs=None):
    """Sends arrays (name -> numpy) with tritonclient; returns name -> numpy."""
    grpc_client, http_client = clients
    mod = grpcclient if protocol == "grpc" else httpclient
    inputs = []
    for name, arr in arrays.items():
        inp = mod.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
        if protocol == "http_json":
            inp.set_data_from_numpy(arr, binary_data=False)
        else:
            inp.set_data_from_numpy(arr)
        inputs.append(inp)
    outs = None
    if outputs:
        if protocol == "grpc":
            outs = [mod.InferRequestedOutput(o) for o in outputs]
        else:
            outs = [mod.InferRequestedOutput(o, binary_data=protocol == "http") for o in outputs]
    client = grpc_client if protocol == "grpc" else http_client
    result = client.infer(model, inputs, outputs=outs)
    names = outputs or [o["name"] for o in result.get_response(**({"as_json": True} if protocol == "grpc" else {}))["outputs"]]
    return {n: result.as_numpy(n) for n in names}


def infer_json(http_url, model, arrays):
    """A KServe v2 JSON request built by hand; returns name -> numpy."""
    def values(arr):
        if arr.dtype == np.object_:
            return [x.decode() for x in arr.ravel()]
        return arr.astype(np.float32).tolist() if arr.dtype == ml_dtypes.bfloat16 else arr.ravel().tolist()

    body = {"inputs": [
        {"name": n, "shape": list(a.shape), "datatype": np_to_triton_dtype(a.dtype), "data": values(a)}
        for n, a in arrays.items()
    ]}
    req = urllib.request.Request(f"http://{http_url}/v2/models/{model}/infer",
                                 data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        resp = json.load(r)
    out = {}
    for o in resp["outputs"]:
        dt = o["datatype"]
        if dt == "BYTES":
            out[o["name"]] = np.array([x.encode() for x in o["data"]], dtype=np.object_)
        elif dt == "BF16":
            out[o["name"]] = np.array(o["data"], dtype=np.float32).astype(ml_dtypes.bfloat16)
        else:
            out[o["name"]] = np.array(o["data"], dtype=NUMPY_TYPES[dt]).reshape(o["shape"])
    return out


@pytest.fixture
def clients(grpc_client, http_client):
    return grpc_client, http_client


def test_health_and_server_metadata(grpc_client, http_client):
    assert grpc_client.is_server_live() and http_client.is_server_live()
    assert grpc_client.is_server_ready() and http_client.is_server_ready()
    md = http_client.get_server_metadata()
    assert md["name"] == "helix-worker"
    assert "binary_tensor_data" in md["extensions"]
    gmd = grpc_client.get_server_metadata()
    assert gmd.name == "helix-worker"


@pytest.mark.parametrize("model", ["simple", "simple_string", "mlp", "identity_all"])
def test_model_metadata_and_config(grpc_client, http_client, model):
    assert grpc_client.is_model_ready(model) and http_client.is_model_ready(model)
    hmd = http_client.get_model_metadata(model)
    gmd = grpc_client.get_model_metadata(model, as_json=True)
    assert hmd["name"] == gmd["name"] == model
    assert hmd["platform"] == "onnxruntime_onnx"
    assert [i["name"] for i in hmd["inputs"]] == [i["name"] for i in gmd["inputs"]]
    sess = ort.InferenceSession(str(MODELS / model / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert sorted(i["name"] for i in hmd["inputs"]) == sorted(i.name for i in sess.get_inputs())
    hcfg = http_client.get_model_config(model)
    gcfg = grpc_client.get_model_config(model, as_json=True)["config"]
    assert hcfg["name"] == gcfg["name"] == model
    assert int(hcfg.get("max_batch_size", 0)) == int(gcfg.get("max_batch_size", 0))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_simple(clients, protocol):
    rng = np.random.default_rng(1)
    a = rng.integers(-1000, 1000, size=(3, 16), dtype=np.int32)
    b = rng.integers(-1000, 1000, size=(3, 16), dtype=np.int32)
    got = infer(clients, protocol, "simple", {"INPUT0": a, "INPUT1": b}, ["OUTPUT0", "OUTPUT1"])
    want = reference("simple", {"INPUT0": a, "INPUT1": b})
    np.testing.assert_array_equal(got["OUTPUT0"], want["OUTPUT0"])
    np.testing.assert_array_equal(got["OUTPUT1"], want["OUTPUT1"])
    np.testing.assert_array_equal(got["OUTPUT0"], a + b)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_simple_one_output(clients, protocol):
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    got = infer(clients, protocol, "simple", {"INPUT0": a, "INPUT1": a}, ["OUTPUT1"])
    assert list(got) == ["OUTPUT1"]
    np.testing.assert_array_equal(got["OUTPUT1"], np.zeros((1, 16), np.int32))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bytes_model(clients, protocol):
    # simple_string is Triton's: decimal integers as strings -> their sum
    # and difference as strings.
    rng = np.random.default_rng(8)
    a = rng.integers(-10**6, 10**6, size=(2, 16), dtype=np.int32)
    b = rng.integers(-10**6, 10**6, size=(2, 16), dtype=np.int32)
    a[0, :2] = [0, -7]

    def text(x):
        return np.vectorize(lambda v: str(v).encode(), otypes=[np.object_])(x)

    feeds = {"INPUT0": text(a), "INPUT1": text(b)}
    got = infer(clients, protocol, "simple_string", feeds)
    want = reference("simple_string", {k: np.vectorize(bytes.decode, otypes=[np.object_])(v) for k, v in feeds.items()})
    for name, arr in want.items():
        assert [x.decode() if isinstance(x, bytes) else x for x in got[name].ravel()] == list(arr.ravel())
    assert got["OUTPUT0"].tolist() == text(a + b).tolist()
    assert got["OUTPUT1"].tolist() == text(a - b).tolist()


def identity_inputs(http_client, protocol):
    md = http_client.get_model_metadata("identity_all")
    rng = np.random.default_rng(7)
    feeds = {}
    for i in md["inputs"]:
        dt = i["datatype"]
        n = 5
        if dt == "BF16":
            arr = np.array([0.0, -1.5, 2.0, 1024.0, 0.0078125], dtype=ml_dtypes.bfloat16)
        elif dt == "BYTES" and protocol == "http_json":
            arr = np.array([b"", b"a", b"json text", "ünï".encode(), b"z" * 300], dtype=np.object_)
        elif dt == "BOOL":
            arr = rng.integers(0, 2, n).astype(np.bool_)
        elif dt == "BYTES":
            # No NUL bytes: ONNX Runtime's string tensors are C strings (the
            # worker answers NUL with a clear error instead).
            arr = np.array([b"", b"a", b"\x01\xff binary", "ünï".encode(), b"z" * 300], dtype=np.object_)
        elif dt.startswith(("FP",)):
            arr = (rng.standard_normal(n) * 100).astype(NUMPY_TYPES[dt])
        else:
            info = np.iinfo(NUMPY_TYPES[dt])
            arr = np.array([info.min, info.max, 0, 1, info.max // 3], dtype=NUMPY_TYPES[dt])
        feeds[i["name"]] = arr
    return feeds


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_datatype(clients, protocol, http_client, worker):
    feeds = identity_inputs(http_client, protocol)
    assert {"IN_BOOL", "IN_INT8", "IN_UINT64", "IN_FP16", "IN_FP64", "IN_BYTES"} <= set(feeds)
    assert "IN_BF16" in feeds
    outs = [n.replace("IN_", "OUT_", 1) for n in feeds]
    if protocol == "http_json":
        # tritonclient sends BF16 over HTTP only as binary data, so the
        # KServe JSON encoding of every type is sent here by hand.
        got = infer_json(worker.http_url, "identity_all", feeds)
    else:
        got = infer(clients, protocol, "identity_all", feeds, outs)
    for name, arr in feeds.items():
        out = name.replace("IN_", "OUT_", 1)
        if arr.dtype == np.object_:
            assert list(got[out]) == list(arr), name
        else:
            assert got[out].dtype == arr.dtype, name
            np.testing.assert_array_equal(got[out], arr, err_msg=name)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mlp_matches_onnxruntime(clients, protocol):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 256)).astype(np.float32)
    got = infer(clients, protocol, "mlp", {"input": x})
    want = reference("mlp", {"input": x})
    for name, arr in want.items():
        np.testing.assert_allclose(got[name], arr, rtol=1e-5, atol=1e-6)


def test_dynamic_batching_batches_concurrent_requests(http_client, grpc_client):
    # mlp_batched is mlp with a 50 ms max_queue_delay, long enough for this
    # Python client's requests to meet in the queue.
    before = grpc_client.get_inference_statistics("mlp_batched", as_json=True)["model_stats"][0]
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((1 + i % 3, 256)).astype(np.float32) for i in range(64)]
    reqs = []
    for x in xs:
        inp = httpclient.InferInput("input", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        reqs.append(http_client.async_infer("mlp_batched", [inp]))
    want = [reference("mlp", {"input": x}) for x in xs]
    for r, w in zip(reqs, want):
        res = r.get_result()
        for name, arr in w.items():
            np.testing.assert_allclose(res.as_numpy(name), arr, rtol=1e-5, atol=1e-6)
    after = grpc_client.get_inference_statistics("mlp_batched", as_json=True)["model_stats"][0]
    inferences = int(after.get("inference_count", 0)) - int(before.get("inference_count", 0))
    executions = int(after.get("execution_count", 0)) - int(before.get("execution_count", 0))
    assert inferences == sum(x.shape[0] for x in xs)
    assert executions < len(xs), "concurrent requests were never batched"


def test_stream_infer(grpc_client):
    results = queue.Queue()
    grpc_client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        sent = {}
        for i in range(8):
            a = np.full((1, 16), i, np.int32)
            inp0 = grpcclient.InferInput("INPUT0", [1, 16], "INT32")
            inp0.set_data_from_numpy(a)
            inp1 = grpcclient.InferInput("INPUT1", [1, 16], "INT32")
            inp1.set_data_from_numpy(a)
            grpc_client.async_stream_infer("simple", [inp0, inp1], request_id=str(i))
            sent[str(i)] = a
        # A bad request mid-stream is answered with an error; the stream goes on.
        bad = grpcclient.InferInput("INPUT0", [1, 8], "INT32")
        bad.set_data_from_numpy(np.zeros((1, 8), np.int32))
        grpc_client.async_stream_infer("simple", [bad], request_id="bad")
        errors = 0
        for _ in range(9):
            result, error = results.get(timeout=30)
            if error is not None:
                errors += 1
                continue
            rid = result.get_response().id
            np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), sent[rid] * 2)
        assert errors == 1
    finally:
        grpc_client.stop_stream()


def test_statistics(grpc_client, http_client):
    a = np.ones((1, 16), np.int32)
    infer((grpc_client, http_client), "grpc", "simple", {"INPUT0": a, "INPUT1": a})
    stats = http_client.get_inference_statistics("simple")["model_stats"][0]
    assert stats["name"] == "simple" and stats["inference_count"] >= 1
    assert stats["inference_stats"]["success"]["count"] >= 1
    gstats = grpc_client.get_inference_statistics(as_json=True)["model_stats"]
    assert {"simple", "mlp"} <= {s["name"] for s in gstats}


def test_repository_index_reports_broken_models(grpc_client, http_client):
    index = {m["name"]: m for m in http_client.get_model_repository_index()}
    gindex = {m["name"]: m for m in grpc_client.get_model_repository_index(as_json=True)["models"]}
    for name in ("broken_config", "broken_onnx"):
        assert index[name]["state"] == "UNAVAILABLE" and index[name]["reason"], index[name]
        assert gindex[name]["state"] == "UNAVAILABLE"
    assert "line" in index["broken_config"]["reason"]
    assert index["simple"]["state"] == "READY"


def test_load_unload(grpc_client, http_client):
    http_client.unload_model("simple_string")
    assert not grpc_client.is_model_ready("simple_string")
    with pytest.raises(InferenceServerException):
        infer((grpc_client, http_client), "grpc", "simple_string",
              {"INPUT0": np.array([[b"1"] * 16], dtype=np.object_), "INPUT1": np.array([[b"2"] * 16], dtype=np.object_)})
    grpc_client.load_model("simple_string")
    assert http_client.is_model_ready("simple_string")
    # Other models served throughout.
    a = np.ones((1, 16), np.int32)
    infer((grpc_client, http_client), "http", "simple", {"INPUT0": a, "INPUT1": a})


BAD_REQUESTS = [
    ("unknown model", "nope", {"INPUT0": np.ones((1, 16), np.int32)}, "unknown model"),
    ("wrong shape", "simple", {"INPUT0": np.ones((1, 8), np.int32), "INPUT1": np.ones((1, 8), np.int32)}, "unexpected shape"),
    ("wrong datatype", "simple", {"INPUT0": np.ones((1, 16), np.float32), "INPUT1": np.ones((1, 16), np.float32)}, "data-type"),
    ("missing input", "simple", {"INPUT0": np.ones((1, 16), np.int32)}, "INPUT1"),
    ("batch over max", "simple", {"INPUT0": np.ones((9, 16), np.int32), "INPUT1": np.ones((9, 16), np.int32)}, "batch-size"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name,model,arrays,want", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_clear_errors(clients, protocol, name, model, arrays, want):
    with pytest.raises(InferenceServerException) as exc:
        infer(clients, protocol, model, arrays)
    assert want in str(exc.value), str(exc.value)
    # The worker keeps serving.
    a = np.ones((1, 16), np.int32)
    infer(clients, protocol, "simple", {"INPUT0": a, "INPUT1": a})


def test_metrics_use_triton_names(worker, grpc_client, http_client):
    a = np.ones((1, 16), np.int32)
    infer((grpc_client, http_client), "grpc", "simple", {"INPUT0": a, "INPUT1": a})
    text = worker.metrics()
    for name in ("nv_inference_request_success", "nv_inference_count", "nv_inference_exec_count",
                 "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
                 "nv_inference_compute_infer_duration_us", "nv_inference_pending_request_count",
                 "helix_inference_request_duration_seconds_bucket"):
        assert f'{name}{{model="simple",version="1"' in text, name


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_classification_extension(grpc_client, http_client, protocol):
    mod = grpcclient if protocol == "grpc" else httpclient
    client = grpc_client if protocol == "grpc" else http_client
    x = np.random.default_rng(5).standard_normal((2, 256)).astype(np.float32)
    inp = mod.InferInput("input", [2, 256], "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("mlp", [inp], outputs=[mod.InferRequestedOutput("probabilities", class_count=3)])
    got = result.as_numpy("probabilities")
    probs = reference("mlp", {"input": x})["probabilities"]
    assert got.shape == (2, 3)
    for row, p in zip(got, probs):
        want_idx = list(np.argsort(-p, kind="stable")[:3])
        assert [int(c.decode().split(":")[1]) for c in row] == want_idx
        np.testing.assert_allclose([float(c.decode().split(":")[0]) for c in row], p[want_idx], atol=1e-6)


def test_over_large_requests_are_refused(repo):
    """A worker with a 64 KiB limit refuses bigger requests on both
    protocols with a clear error and keeps serving small ones."""
    from conftest import Worker

    w = Worker(repo, ["--model-control-mode=explicit", "--load-model=mlp", "--max-request-bytes=65536"])
    try:
        big = np.zeros((100, 256), np.float32)  # 100 KiB of tensor data
        small = np.zeros((1, 256), np.float32)
        g = grpcclient.InferenceServerClient(w.grpc_url)
        h = httpclient.InferenceServerClient(w.http_url)
        for protocol, client, mod in (("grpc", g, grpcclient), ("http", h, httpclient)):
            inp = mod.InferInput("input", list(big.shape), "FP32")
            inp.set_data_from_numpy(big)
            with pytest.raises(InferenceServerException) as exc:
                client.infer("mlp", [inp])
            msg = str(exc.value)
            want = "RESOURCE_EXHAUSTED" if protocol == "grpc" else "[413] request body exceeds the maximum allowed size of 65536"
            assert want in msg, msg
            inp = mod.InferInput("input", list(small.shape), "FP32")
            inp.set_data_from_numpy(small)
            assert client.infer("mlp", [inp]).as_numpy("probabilities").shape == (1, 10)
    finally:
        w.stop()
