"""tritonclient (gRPC and HTTP) against helix-worker's pytorch backend
(TorchScript, Triton's pytorch_libtorch): outputs checked against PyTorch
eager on the same inputs.

Tolerance: BOOL and the integer types must be equal bit for bit, and so must
FP16, BF16, FP32 and FP64 for the elementwise datatype model (the worker's
libtorch is the wheel the eager reference imports, so the same kernels run).
The MLP is compared with rtol 1e-5, atol 1e-6: a batch's size changes how
its matrix products are blocked.

The repository is made here: the sample mlp_torch (`make models`), a model
with an input and output of every datatype libtorch has, written with
torch.jit.script, and broken models (corrupt file, wrong signature, missing
file, no declared IO) that must be UNAVAILABLE with the reason.
"""

import sys

import ml_dtypes
import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import np_to_triton_dtype

from conftest import MODELS, ROOT, WORKER, Worker

sys.path.insert(0, str(ROOT / "scripts"))
import make_torch_models  # noqa: E402

PROTOCOLS = ["grpc", "http"]

# KServe datatype -> (torch dtype, numpy dtype) for every datatype libtorch has.
DATATYPES = {
    "BOOL": (torch.bool, np.bool_),
    "UINT8": (torch.uint8, np.uint8),
    "INT8": (torch.int8, np.int8),
    "INT16": (torch.int16, np.int16),
    "INT32": (torch.int32, np.int32),
    "INT64": (torch.int64, np.int64),
    "FP16": (torch.float16, np.float16),
    "FP32": (torch.float32, np.float32),
    "FP64": (torch.float64, np.float64),
    "BF16": (torch.bfloat16, ml_dtypes.bfloat16),
}

ITEM = 4  # elements per batch item of the datatype model


class Datatypes(torch.nn.Module):
    """One argument and one result per datatype: ~x for BOOL, x * 3 + 1 for
    integers (wrapping), x * 1.5 + tanh(x) for floats."""

    def forward(self, IN_BOOL: torch.Tensor, IN_UINT8: torch.Tensor, IN_INT8: torch.Tensor,
                IN_INT16: torch.Tensor, IN_INT32: torch.Tensor, IN_INT64: torch.Tensor,
                IN_FP16: torch.Tensor, IN_FP32: torch.Tensor, IN_FP64: torch.Tensor,
                IN_BF16: torch.Tensor):
        return (~IN_BOOL, IN_UINT8 * 3 + 1, IN_INT8 * 3 + 1, IN_INT16 * 3 + 1, IN_INT32 * 3 + 1,
                IN_INT64 * 3 + 1, IN_FP16 * 1.5 + torch.tanh(IN_FP16), IN_FP32 * 1.5 + torch.tanh(IN_FP32),
                IN_FP64 * 1.5 + torch.tanh(IN_FP64), IN_BF16 * 1.5 + torch.tanh(IN_BF16))


class TwoArgs(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


def io_block(section, entries):
    body = ",\n".join(f'  {{ name: "{n}" data_type: TYPE_{t} dims: [ {", ".join(map(str, d))} ] }}' for n, t, d in entries)
    return f"{section} [\n{body}\n]\n"


def torch_model(repo, name, module, inputs, outputs, extra="", max_batch_size=0):
    d = repo / name
    (d / "1").mkdir(parents=True)
    if module is not None:
        (d / "1" / "model.pt").write_bytes(make_torch_models.torchscript_bytes(module))
    config = f'name: "{name}"\nplatform: "pytorch_libtorch"\nmax_batch_size: {max_batch_size}\n'
    if inputs:
        config += io_block("input", inputs)
    if outputs:
        config += io_block("output", outputs)
    (d / "config.pbtxt").write_text(config + extra)
    return d


@pytest.fixture(scope="module")
def torch_worker(tmp_path_factory):
    if not WORKER.exists():
        pytest.fail(f"{WORKER} is missing: run `make build`")
    if not (MODELS / "mlp_torch" / "1" / "model.pt").exists():
        pytest.fail("sample model mlp_torch is missing: run `make models`")
    repo = tmp_path_factory.mktemp("torch-repo")
    (repo / "mlp_torch").symlink_to(MODELS / "mlp_torch")
    # mlp_torch with a 50 ms queue delay, so that concurrent requests meet.
    batched = repo / "mlp_torch_batched"
    (batched / "1").mkdir(parents=True)
    (batched / "1" / "model.pt").symlink_to(MODELS / "mlp_torch" / "1" / "model.pt")
    config = (MODELS / "mlp_torch" / "config.pbtxt").read_text()
    config = config.replace('name: "mlp_torch"', 'name: "mlp_torch_batched"')
    config = config.replace("max_queue_delay_microseconds: 200", "max_queue_delay_microseconds: 50000")
    assert "50000" in config and "mlp_torch_batched" in config
    (batched / "config.pbtxt").write_text(config)
    torch_model(repo, "datatypes_torch", Datatypes(),
                [(f"IN_{t}", t, [ITEM]) for t in DATATYPES],
                [(f"OUT_{t}", t, [ITEM]) for t in DATATYPES],
                extra="dynamic_batching { max_queue_delay_microseconds: 50000 }\n", max_batch_size=8)
    # Broken models: each must be UNAVAILABLE with its reason.
    x, y = [("x", "FP32", [4])], [("y", "FP32", [4])]
    corrupt = torch_model(repo, "torch_corrupt", None, x, y)
    (corrupt / "1" / "model.pt").write_bytes(b"this is not a TorchScript file")
    torch_model(repo, "torch_wrong_signature", TwoArgs(), [("a", "FP32", [4])], y)
    torch_model(repo, "torch_missing_file", None, x, y)
    torch_model(repo, "torch_no_io", TwoArgs(), [], [])
    w = Worker(repo, ["--model-control-mode=explicit", "--load-model=*", "--strict-readiness=false"])
    yield w
    w.stop()


@pytest.fixture(scope="module")
def clients(torch_worker):
    return (grpcclient.InferenceServerClient(torch_worker.grpc_url),
            httpclient.InferenceServerClient(torch_worker.http_url, concurrency=16))


def to_torch(arr):
    if arr.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(arr.copy())


def to_numpy(t):
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def infer(clients, protocol, model, arrays, asynchronous=False):
    grpc_client, http_client = clients
    mod = grpcclient if protocol == "grpc" else httpclient
    inputs = []
    for name, arr in arrays.items():
        inp = mod.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype) or "BF16")
        inp.set_data_from_numpy(arr)
        inputs.append(inp)
    if asynchronous:
        return http_client.async_infer(model, inputs)
    client = grpc_client if protocol == "grpc" else http_client
    return client.infer(model, inputs)


def datatype_inputs(rng, rows):
    feeds = {}
    for t, (_, npt) in DATATYPES.items():
        n = rows * ITEM
        if t == "BOOL":
            arr = rng.integers(0, 2, n).astype(np.bool_)
        elif t in ("FP16", "FP32", "FP64", "BF16"):
            arr = (rng.standard_normal(n) * 4).astype(np.float32).astype(npt)
        else:
            info = np.iinfo(npt)
            arr = rng.integers(info.min, info.max, n, dtype=npt, endpoint=True)
            arr[:2] = [info.min, info.max]
        feeds[f"IN_{t}"] = arr.reshape(rows, ITEM)
    return feeds


def eager_datatypes(feeds):
    with torch.inference_mode():
        outs = Datatypes()(*(to_torch(feeds[f"IN_{t}"]) for t in DATATYPES))
    return {f"OUT_{t}": to_numpy(o) for t, o in zip(DATATYPES, outs)}


def assert_same(got, want, name):
    assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8), err_msg=name)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_datatype_equals_eager(clients, protocol):
    feeds = datatype_inputs(np.random.default_rng(11), 3)
    result = infer(clients, protocol, "datatypes_torch", feeds)
    want = eager_datatypes(feeds)
    assert len(want) == len(DATATYPES) == 10
    for name, arr in want.items():
        assert_same(result.as_numpy(name), arr, name)


def eager_mlp():
    """The MLP as a plain nn.Module (not scripted), make_models.py's weights."""
    module, _, _ = make_torch_models.mlp_torch()
    return module.eval()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_mlp_equals_eager(clients, protocol):
    x = np.random.default_rng(3).standard_normal((5, 256)).astype(np.float32)
    got = infer(clients, protocol, "mlp_torch", {"input": x}).as_numpy("probabilities")
    with torch.inference_mode():
        want = eager_mlp()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def stats(clients, model):
    s = clients[0].get_inference_statistics(model, as_json=True)["model_stats"][0]
    return int(s.get("inference_count", 0)), int(s.get("execution_count", 0))


@pytest.mark.parametrize("model", ["mlp_torch_batched", "datatypes_torch"])
def test_mixed_batch_sizes_in_one_dynamic_batch(clients, model):
    rng = np.random.default_rng(5)
    if model == "mlp_torch_batched":
        feeds = [{"input": rng.standard_normal((1 + i % 3, 256)).astype(np.float32)} for i in range(48)]
        module = eager_mlp()

        def eager(f):
            with torch.inference_mode():
                return {"probabilities": module(torch.from_numpy(f["input"])).numpy()}
    else:
        # Batch sizes 1, 2 and 3 meet in batches of up to 8.
        feeds = [datatype_inputs(rng, 1 + i % 3) for i in range(24)]
        eager = eager_datatypes
    inf0, exe0 = stats(clients, model)
    reqs = [infer(clients, "http", model, f, asynchronous=True) for f in feeds]
    for r, f in zip(reqs, feeds):
        res = r.get_result()
        for name, want in eager(f).items():
            if model == "mlp_torch_batched":
                np.testing.assert_allclose(res.as_numpy(name), want, rtol=1e-5, atol=1e-6)
            else:
                assert_same(res.as_numpy(name), want, name)
    inf1, exe1 = stats(clients, model)
    assert inf1 - inf0 == sum(next(iter(f.values())).shape[0] for f in feeds)
    assert exe1 - exe0 < len(feeds), "concurrent requests of mixed batch sizes were never batched"


BROKEN = {
    "torch_corrupt": "model.pt",
    "torch_wrong_signature": 'argument "b" (position 1) is bound by no input of the config',
    "torch_missing_file": "no such file or directory",
    "torch_no_io": "carries no reliable input and output names",
}


def test_bad_models_are_unavailable_with_the_reason(clients):
    grpc_client, http_client = clients
    index = {m["name"]: m for m in http_client.get_model_repository_index()}
    gindex = {m["name"]: m for m in grpc_client.get_model_repository_index(as_json=True)["models"]}
    for name, reason in BROKEN.items():
        for idx in (index, gindex):
            assert idx[name]["state"] == "UNAVAILABLE", idx[name]
            assert reason in idx[name]["reason"], idx[name]
        assert not grpc_client.is_model_ready(name) and not http_client.is_model_ready(name)
    assert "PytorchStreamReader" in index["torch_corrupt"]["reason"] or "zip" in index["torch_corrupt"]["reason"], index["torch_corrupt"]
    # The good models serve beside them.
    assert index["mlp_torch"]["state"] == "READY" and index["datatypes_torch"]["state"] == "READY"


def test_model_metadata_is_the_declared_io(clients):
    md = clients[1].get_model_metadata("mlp_torch")
    assert md["platform"] == "pytorch_libtorch"
    assert md["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 256]}]
    assert md["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]


def test_worker_without_libtorch_serves_the_other_models(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for m in ("mlp", "mlp_torch"):
        (repo / m).symlink_to(MODELS / m)
    missing = tmp_path / "nowhere" / "libhelix_torch.so"
    w = Worker(repo, ["--model-control-mode=explicit", "--load-model=*", "--strict-readiness=false",
                      f"--pytorch-library={missing}"])
    try:
        c = httpclient.InferenceServerClient(w.http_url)
        index = {m["name"]: m for m in c.get_model_repository_index()}
        assert index["mlp"]["state"] == "READY", index
        assert index["mlp_torch"]["state"] == "UNAVAILABLE", index
        assert "libtorch is not available" in index["mlp_torch"]["reason"], index["mlp_torch"]
        assert str(missing) in index["mlp_torch"]["reason"], index["mlp_torch"]
        x = np.zeros((1, 256), np.float32)
        inp = httpclient.InferInput("input", [1, 256], "FP32")
        inp.set_data_from_numpy(x)
        assert c.infer("mlp", [inp]).as_numpy("probabilities").shape == (1, 10)
    finally:
        w.stop()
