"""The no-serving ceiling: one model.onnx run in-process with ONNX Runtime's
Python API, one caller thread, default SessionOptions (helix-worker's default:
ORT picks the intra-op thread count). bench_worker.py runs it with
.venv-bench's Python, whose onnxruntime is the version of the
libonnxruntime.so the worker loads.

    python direct_ort.py --model model.onnx --inputs JSON --batch-sizes 1,8 --seconds 3

--inputs is a JSON list of {"name", "datatype" (KServe), "dims" (without the
batch dimension)}. Prints one JSON object: ORT's version, the intra-op thread
count, and for each batch size runs/s and inferences/s (runs/s x batch size).
"""

import argparse
import json
import os
import time

import numpy as np
import onnxruntime as ort

NUMPY_TYPES = {
    "BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}


def random_feeds(inputs, batch_size, rng):
    feeds = {}
    for spec in inputs:
        dtype = NUMPY_TYPES.get(spec["datatype"])
        if dtype is None:
            raise SystemExit(f"direct_ort: input {spec['name']}: datatype {spec['datatype']} is not supported here")
        shape = [batch_size, *spec["dims"]]
        if np.issubdtype(dtype, np.floating):
            feeds[spec["name"]] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[spec["name"]] = rng.integers(0, 100, size=shape).astype(dtype)
    return feeds


def measure(session, feeds, seconds):
    """Runs for about `seconds` (after a short warm-up); returns runs/s."""
    for _ in range(20):
        session.run(None, feeds)
    runs, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        session.run(None, feeds)
        runs += 1
        now = time.perf_counter()
        if now >= deadline:
            return runs / (now - start)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--inputs", required=True)
    p.add_argument("--batch-sizes", required=True)
    p.add_argument("--seconds", type=float, default=3.0)
    args = p.parse_args()

    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    inputs = json.loads(args.inputs)
    rng = np.random.default_rng(0)
    results = []
    for b in (int(x) for x in args.batch_sizes.split(",")):
        runs = measure(session, random_feeds(inputs, b, rng), args.seconds)
        results.append({"batch_size": b, "runs_per_s": runs, "infer_per_s": runs * b})
    print(json.dumps({
        "onnxruntime": ort.__version__,
        "intra_op_threads": session.get_session_options().intra_op_num_threads,
        "cpu_count": os.cpu_count(),
        "results": results,
    }))


if __name__ == "__main__":
    main()
