"""Triton's model settings model_warmup and response_cache, and the refusal
of config fields helix-worker does not implement, seen by the real
tritonclient against a real helix-worker on ONNX Runtime (the simple model:
OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1).
"""

import json
import re

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from conftest import MODELS, Worker

SIMPLE = (MODELS / "simple" / "config.pbtxt").read_text()

WARMUP_ZERO = """
model_warmup [
  { name: "zeros" batch_size: 4 count: 2
    inputs { key: "INPUT0" value { data_type: TYPE_INT32 dims: [ 16 ] zero_data: true } }
    inputs { key: "INPUT1" value { data_type: TYPE_INT32 dims: [ 16 ] random_data: true } } },
  { name: "from_file" batch_size: 1
    inputs { key: "INPUT0" value { data_type: TYPE_INT32 dims: [ 16 ] input_data_file: "input0" } }
    inputs { key: "INPUT1" value { data_type: TYPE_INT32 dims: [ 16 ] zero_data: true } } }
]
"""

# A sample whose file is too short for dims [16] (8 INT32 values).
WARMUP_BAD = """
model_warmup [
  { name: "short_file" batch_size: 1
    inputs { key: "INPUT0" value { data_type: TYPE_INT32 dims: [ 16 ] input_data_file: "input0" } }
    inputs { key: "INPUT1" value { data_type: TYPE_INT32 dims: [ 16 ] zero_data: true } } }
]
"""


def simple_model(repo, name, extra, warmup_file=None):
    d = repo / name
    (d / "1").mkdir(parents=True)
    (d / "1" / "model.onnx").symlink_to(MODELS / "simple" / "1" / "model.onnx")
    config = SIMPLE.replace('name: "simple"', f'name: "{name}"')
    assert name in config
    (d / "config.pbtxt").write_text(config + extra)
    if warmup_file is not None:
        (d / "warmup").mkdir()
        (d / "warmup" / "input0").write_bytes(warmup_file.astype("<i4").tobytes())


@pytest.fixture(scope="module")
def cache_worker(tmp_path_factory):
    repo = tmp_path_factory.mktemp("warmup_cache")
    simple_model(repo, "cached", WARMUP_ZERO + "response_cache { enable: true }\n", np.arange(16, dtype=np.int32))
    simple_model(repo, "uncached", "")
    simple_model(repo, "warm", WARMUP_ZERO, np.arange(16, dtype=np.int32))
    simple_model(repo, "bad_warmup", WARMUP_BAD, np.arange(8, dtype=np.int32))
    simple_model(repo, "cuda_graphs", "optimization { cuda { graphs: true } }\n")
    simple_model(repo, "labelled", "")
    config = (repo / "labelled" / "config.pbtxt").read_text()
    (repo / "labelled" / "config.pbtxt").write_text(
        config.replace('name: "OUTPUT0"', 'name: "OUTPUT0"\n    label_filename: "labels.txt"', 1))
    (repo / "labelled" / "labels.txt").write_text("".join(f"class{i}\n" for i in range(16)))
    w = Worker(repo, ["--model-control-mode=explicit", "--load-model=*", "--strict-readiness=false",
                      "--response-cache-bytes=1048576"])
    yield w
    w.stop()


def inputs(module, a, b):
    ins = [module.InferInput("INPUT0", [1, 16], "INT32"), module.InferInput("INPUT1", [1, 16], "INT32")]
    ins[0].set_data_from_numpy(a)
    ins[1].set_data_from_numpy(b)
    return ins


def metric(text, name, model):
    m = re.search(rf'^{name}{{model="{model}",version="1"}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_response_cache_hits_show_in_statistics(cache_worker, protocol):
    module = grpcclient if protocol == "grpc" else httpclient
    url = cache_worker.grpc_url if protocol == "grpc" else cache_worker.http_url
    c = module.InferenceServerClient(url)

    def stats():
        s = c.get_inference_statistics("cached", "1", as_json=True) if protocol == "grpc" else c.get_inference_statistics("cached", "1")
        st = s["model_stats"][0]
        inf = st["inference_stats"]
        return (int(inf.get("cache_hit", {}).get("count", 0)), int(inf.get("cache_miss", {}).get("count", 0)),
                int(st.get("execution_count", 0)))

    hits0, misses0, execs0 = stats()
    # A request no other test sends: the protocol's own value.
    a = np.full((1, 16), 7 if protocol == "grpc" else 9, dtype=np.int32)
    b = np.arange(16, dtype=np.int32).reshape(1, 16)
    first = c.infer("cached", inputs(module, a, b))
    second = c.infer("cached", inputs(module, a, b))
    for r in (first, second):
        np.testing.assert_array_equal(r.as_numpy("OUTPUT0"), a + b)
        np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), a - b)
    hits, misses, execs = stats()
    assert (hits - hits0, misses - misses0, execs - execs0) == (1, 1, 1), (hits0, misses0, execs0, hits, misses, execs)

    # Other data, or only one output asked for, is another request.
    r = c.infer("cached", inputs(module, a, b + 1), outputs=[module.InferRequestedOutput("OUTPUT1")])
    np.testing.assert_array_equal(r.as_numpy("OUTPUT1"), a - b - 1)
    assert r.as_numpy("OUTPUT0") is None
    assert stats()[1] == misses + 1

    text = cache_worker.metrics()
    assert metric(text, "nv_cache_num_hits_per_model", "cached") >= 1, text
    assert metric(text, "nv_cache_num_misses_per_model", "cached") >= 2, text
    assert metric(text, "nv_cache_hit_duration_per_model", "cached") is not None
    assert metric(text, "nv_cache_miss_duration_per_model", "cached") is not None
    # A model that does not enable the cache has no cache series.
    assert metric(text, "nv_cache_num_misses_per_model", "uncached") is None


def test_uncached_model_runs_every_request(cache_worker):
    c = grpcclient.InferenceServerClient(cache_worker.grpc_url)
    a = np.ones((1, 16), dtype=np.int32)
    before = c.get_inference_statistics("uncached", "1", as_json=True)["model_stats"][0]
    for _ in range(2):
        c.infer("uncached", inputs(grpcclient, a, a))
    after = c.get_inference_statistics("uncached", "1", as_json=True)["model_stats"][0]
    assert int(after["execution_count"]) - int(before.get("execution_count", 0)) == 2
    assert int(after["inference_stats"].get("cache_hit", {}).get("count", 0)) == 0


def test_warmup_ran_and_is_not_in_statistics(cache_worker):
    c = httpclient.InferenceServerClient(cache_worker.http_url)
    assert c.is_model_ready("warm")
    # One instance: "zeros" twice, "from_file" once, before READY.
    logs = [json.loads(line) for line in cache_worker.logs().splitlines() if line.startswith("{")]
    warmed = [e for e in logs if e["msg"] == "model warmed up" and e["model"] == "warm"]
    assert len(warmed) == 1 and warmed[0]["samples"] == 2 and warmed[0]["executions"] == 3, logs
    # Warm-up is not inference: the statistics start at zero.
    st = c.get_inference_statistics("warm", "1")["model_stats"][0]
    assert int(st.get("inference_count", 0)) == 0 and int(st.get("execution_count", 0)) == 0, st


def test_failing_warmup_is_unavailable_with_reason(cache_worker):
    c = httpclient.InferenceServerClient(cache_worker.http_url)
    index = {m["name"]: m for m in c.get_model_repository_index()}
    bad = index["bad_warmup"]
    assert bad["state"] == "UNAVAILABLE", bad
    assert "warm-up sample 'short_file'" in bad["reason"], bad
    assert "need 64" in bad["reason"], bad
    assert not c.is_model_ready("bad_warmup")
    with pytest.raises(Exception) as e:
        c.load_model("bad_warmup")
    assert "warm-up sample 'short_file'" in str(e.value)


def test_unimplemented_field_is_refused_by_name(cache_worker):
    c = grpcclient.InferenceServerClient(cache_worker.grpc_url)
    index = {m.name: m for m in c.get_model_repository_index().models}
    m = index["cuda_graphs"]
    assert m.state == "UNAVAILABLE", m
    assert "optimization.cuda.graphs is not supported by helix-worker" in m.reason, m


def test_classification_with_label_file(cache_worker):
    """label_filename: Triton's classification answers value:index:label."""
    c = httpclient.InferenceServerClient(cache_worker.http_url)
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    r = c.infer("labelled", inputs(httpclient, a, a), outputs=[httpclient.InferRequestedOutput("OUTPUT0", class_count=2)])
    got = [x.decode() for x in r.as_numpy("OUTPUT0").reshape(-1)]
    assert got == ["30:15:class15", "28:14:class14"], got
