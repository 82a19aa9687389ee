"""tritonclient (gRPC and HTTP) against helix-worker's tensorflow backend
(SavedModels, Triton's tensorflow_savedmodel, run through TensorFlow's C
API): outputs checked against TensorFlow's Python API on the same inputs.

Tolerance: the datatype model's outputs must be equal bit for bit in every
datatype (the worker's libtensorflow_cc.so.2 comes from the same
tensorflow-cpu wheel the Python reference imports, so the same kernels run).
The MLP is compared with rtol 1e-5, atol 1e-6: a batch's size changes how
its matrix products are blocked.

The repository is made here: the sample mlp_savedmodel (`make models`), a
SavedModel with an input and output of every datatype TensorFlow has a
KServe datatype for (BYTES as tf.string) and no config.pbtxt beyond its
platform (the config is completed from the serving_default signature), and
broken models (corrupt saved_model.pb, corrupt variables, no serving_default
signature, config naming a tensor the signature lacks, missing SavedModel)
that must be UNAVAILABLE with the reason.
"""

import os
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from tritonclient.utils import InferenceServerException, np_to_triton_dtype  # noqa: E402

from conftest import MODELS, WORKER, Worker  # noqa: E402

PROTOCOLS = ["grpc", "http"]

# KServe datatype -> (TensorFlow dtype, numpy dtype): every datatype the
# backend serves (TensorFlow has them all; BYTES is tf.string).
DATATYPES = {
    "BOOL": (tf.bool, np.bool_),
    "UINT8": (tf.uint8, np.uint8),
    "UINT16": (tf.uint16, np.uint16),
    "UINT32": (tf.uint32, np.uint32),
    "UINT64": (tf.uint64, np.uint64),
    "INT8": (tf.int8, np.int8),
    "INT16": (tf.int16, np.int16),
    "INT32": (tf.int32, np.int32),
    "INT64": (tf.int64, np.int64),
    "FP16": (tf.float16, np.float16),
    "BF16": (tf.bfloat16, ml_dtypes.bfloat16),
    "FP32": (tf.float32, np.float32),
    "FP64": (tf.float64, np.float64),
    "BYTES": (tf.string, np.object_),
}


def compute(x):
    """The datatype model, per dtype: not x for BOOL, x * 3 + 1 for integers
    (wrapping), x * 1.5 + tanh(x) for floats, x + "!" + x for strings."""
    if x.dtype == tf.bool:
        return tf.logical_not(x)
    if x.dtype == tf.string:
        return tf.strings.join([x, x], separator="!")
    if x.dtype.is_floating:
        return x * tf.constant(1.5, x.dtype) + tf.tanh(x)
    return x * tf.constant(3, x.dtype) + tf.constant(1, x.dtype)


class Datatypes(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, None], dt, name=f"IN_{k}") for k, (dt, _) in DATATYPES.items()])
    def serve(self, *args):
        return {f"OUT_{k}": compute(x) for k, x in zip(DATATYPES, args)}


class AddSub(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="a"),
                                  tf.TensorSpec([None, 4], tf.float32, name="b")])
    def serve(self, a, b):
        return {"sum": a + b, "diff": a - b}


def savedmodel(path, module, signatures):
    tf.saved_model.save(module, str(path), signatures=signatures)


def config(path, text):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.pbtxt").write_text(text)


PLATFORM = 'platform: "tensorflow_savedmodel"\n'

# Broken models and the reason each must show (a part of it).
BROKEN = {
    "tf_corrupt": "saved_model.pb is not a SavedModel",
    "tf_corrupt_variables": "loading SavedModel",
    "tf_wrong_signature": 'no signature "serving_default" (signatures: predict)',
    "tf_wrong_config": 'input "x" is not an input of the model',
    "tf_missing": "SavedModel folder: stat",
}


@pytest.fixture(scope="module")
def tf_repo(tmp_path_factory):
    if not WORKER.exists():
        pytest.fail(f"{WORKER} is missing: run `make build`")
    sample = MODELS / "mlp_savedmodel" / "1" / "model.savedmodel" / "saved_model.pb"
    if not sample.exists():
        pytest.fail(f"{sample} is missing: run `make models`")
    repo = tmp_path_factory.mktemp("tfrepo")
    (repo / "mlp_savedmodel").symlink_to(MODELS / "mlp_savedmodel")
    # mlp as ONNX too: the worker serves it whether TensorFlow loads or not.
    (repo / "mlp").symlink_to(MODELS / "mlp")

    config(repo / "tf_types", PLATFORM)
    m = Datatypes()
    savedmodel(repo / "tf_types" / "1" / "model.savedmodel", m, {"serving_default": m.serve})

    config(repo / "tf_corrupt", PLATFORM)
    (repo / "tf_corrupt" / "1" / "model.savedmodel").mkdir(parents=True)
    (repo / "tf_corrupt" / "1" / "model.savedmodel" / "saved_model.pb").write_bytes(b"\xff\xfe not a protobuf")

    config(repo / "tf_corrupt_variables", PLATFORM)
    a = AddSub()
    a.zero = tf.Variable(tf.zeros([4]))  # a variable, so that variables/ is read
    sm = repo / "tf_corrupt_variables" / "1" / "model.savedmodel"
    savedmodel(sm, a, {"serving_default": a.serve})
    for f in (sm / "variables").iterdir():
        f.write_bytes(b"corrupt")

    config(repo / "tf_wrong_signature", PLATFORM)
    a = AddSub()
    savedmodel(repo / "tf_wrong_signature" / "1" / "model.savedmodel", a, {"predict": a.serve})

    config(repo / "tf_wrong_config", PLATFORM + """max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "sum" data_type: TYPE_FP32 dims: [ 4 ] } ]
""")
    a = AddSub()
    savedmodel(repo / "tf_wrong_config" / "1" / "model.savedmodel", a, {"serving_default": a.serve})

    config(repo / "tf_missing", PLATFORM)
    (repo / "tf_missing" / "1").mkdir()
    return repo


@pytest.fixture(scope="module")
def tf_worker(tf_repo):
    w = Worker(tf_repo, ["--model-control-mode=explicit", "--load-model=*", "--strict-readiness=false"])
    yield w
    w.stop()


@pytest.fixture(scope="module")
def clients(tf_worker):
    return {
        "grpc": grpcclient.InferenceServerClient(tf_worker.grpc_url),
        "http": httpclient.InferenceServerClient(tf_worker.http_url, concurrency=16),
    }


def infer(client, protocol, model, arrays):
    mod = grpcclient if protocol == "grpc" else httpclient
    inputs = []
    for name, arr in arrays.items():
        inp = mod.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
        inp.set_data_from_numpy(arr)
        inputs.append(inp)
    return client.infer(model, inputs)


def reference(model_dir, arrays):
    """The same SavedModel run by TensorFlow's Python API."""
    fn = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    return {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in arrays.items()}).items()}


def datatype_inputs(rows):
    rng = np.random.default_rng(18 + rows)
    feeds = {}
    for k, (_, npt) in DATATYPES.items():
        shape = (rows, 3)
        if k == "BOOL":
            arr = rng.integers(0, 2, shape).astype(np.bool_)
        elif k == "BYTES":
            words = [b"", b"a", b"\x00\xff binary", "ünï".encode(), b"z" * 300, b"tf"]
            arr = np.array([[words[(i + j) % len(words)] for j in range(3)] for i in range(rows)], dtype=np.object_)
        elif k in ("FP16", "BF16", "FP32", "FP64"):
            arr = (rng.standard_normal(shape) * 4).astype(npt)
        else:
            info = np.iinfo(npt)
            arr = rng.integers(info.min, info.max, shape, dtype=npt, endpoint=True)
        feeds[f"IN_{k}"] = arr
    return feeds


def test_config_completed_from_signature(clients):
    cfg = clients["grpc"].get_model_config("tf_types", as_json=True)["config"]
    assert cfg["platform"] == "tensorflow_savedmodel" and cfg["backend"] == "tensorflow"
    # The signature's shapes are [None, None]: a batch dimension, so the
    # model batches (Triton's default max_batch_size 4) with dims [-1].
    assert cfg["max_batch_size"] == 4
    got = {i["name"]: (i["data_type"], [int(d) for d in i["dims"]]) for i in cfg["input"]}
    assert got == {f"IN_{k}": (f"TYPE_{'STRING' if k == 'BYTES' else k}", [-1]) for k in DATATYPES}
    md = clients["http"].get_model_metadata("tf_types")
    assert {o["name"]: o["datatype"] for o in md["outputs"]} == {f"OUT_{k}": k for k in DATATYPES}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("rows", [1, 3])
def test_every_datatype_equals_tensorflow(clients, tf_repo, protocol, rows):
    feeds = datatype_inputs(rows)
    want = reference(tf_repo / "tf_types" / "1" / "model.savedmodel", feeds)
    result = infer(clients[protocol], protocol, "tf_types", feeds)
    for k in DATATYPES:
        name = f"OUT_{k}"
        got = result.as_numpy(name)
        assert got.shape == want[name].shape, name
        if k == "BYTES":
            assert got.ravel().tolist() == want[name].ravel().tolist(), name
        else:
            assert got.dtype == want[name].dtype, name
            np.testing.assert_array_equal(got, want[name], err_msg=name)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mlp_mixed_batch_sizes_equal_tensorflow(clients, protocol):
    """Concurrent requests of 1, 2, 5, 16 and 37 rows: the dynamic batcher
    merges them into batches of mixed sizes; each answer is its own rows."""
    model_dir = MODELS / "mlp_savedmodel" / "1" / "model.savedmodel"
    sizes = [1, 2, 5, 16, 37, 1, 3]
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((n, 256)).astype(np.float32) for n in sizes]
    want = [reference(model_dir, {"input": x})["probabilities"] for x in xs]
    if protocol == "http":
        # tritonclient.http is gevent-based: concurrency through async_infer.
        mod, client = httpclient, clients["http"]
        pending = []
        for x in xs:
            inp = mod.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            pending.append(client.async_infer("mlp_savedmodel", [inp]))
        got = [p.get_result().as_numpy("probabilities") for p in pending]
        errors = []
    else:
        got = [None] * len(xs)
        errors = []

        def send(i):
            try:
                got[i] = infer(clients[protocol], protocol, "mlp_savedmodel", {"input": xs[i]}).as_numpy("probabilities")
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(xs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    for g, w, n in zip(got, want, sizes):
        assert g.shape == (n, 10)
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_mlp_savedmodel_equals_onnx_mlp(clients):
    x = np.random.default_rng(9).standard_normal((4, 256)).astype(np.float32)
    tfo = infer(clients["grpc"], "grpc", "mlp_savedmodel", {"input": x}).as_numpy("probabilities")
    onnx = infer(clients["grpc"], "grpc", "mlp", {"input": x}).as_numpy("probabilities")
    np.testing.assert_allclose(tfo, onnx, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_models_unavailable_with_reason(clients, protocol):
    index = clients[protocol].get_model_repository_index(**({"as_json": True} if protocol == "grpc" else {}))
    models = index["models"] if protocol == "grpc" else index
    by_name = {m["name"]: m for m in models}
    for name, reason in BROKEN.items():
        m = by_name[name]
        assert m["state"] == "UNAVAILABLE", m
        assert reason in m["reason"], (name, m["reason"])
    for ok in ("mlp_savedmodel", "tf_types", "mlp"):
        assert by_name[ok]["state"] == "READY", by_name[ok]
    with pytest.raises(InferenceServerException):
        infer(clients[protocol], protocol, "tf_corrupt", {"input": np.zeros((1, 256), np.float32)})


def test_without_tensorflow_models_unavailable_others_serve(tf_repo, monkeypatch):
    """A worker that cannot find TensorFlow serves the ONNX mlp; the
    SavedModels are UNAVAILABLE, their reason naming where it looked."""
    monkeypatch.setenv("HELIX_TENSORFLOW_LIB", "/nonexistent/libtensorflow_cc.so.2")
    w = Worker(tf_repo, ["--model-control-mode=explicit", "--load-model=mlp", "--load-model=mlp_savedmodel",
                         "--strict-readiness=false"])
    try:
        c = httpclient.InferenceServerClient(w.http_url)
        by_name = {m["name"]: m for m in c.get_model_repository_index()}
        assert by_name["mlp"]["state"] == "READY"
        assert by_name["mlp_savedmodel"]["state"] == "UNAVAILABLE"
        assert "HELIX_TENSORFLOW_LIB=/nonexistent/libtensorflow_cc.so.2" in by_name["mlp_savedmodel"]["reason"]
        x = np.zeros((1, 256), np.float32)
        assert infer(c, "http", "mlp", {"input": x}).as_numpy("probabilities").shape == (1, 10)
    finally:
        w.stop()
