#!/usr/bin/env python3
"""HelixFlow's GPU check: run on a machine with an NVIDIA GPU, the CUDA
driver, PyTorch and onnxruntime (Python), no Go and no network needed.

  python3 gpu_check.py --out DIR [--quick] [--budget SECONDS]

It runs from the bundle `make gpu-check` writes (this script beside bin/ and
models/), and:

 1. writes a model repository: the sample models and the project's CNN and
    transformer encoder, each on the cuda backend (KIND_GPU) in fp32 and fp16;
 2. starts bin/helix-worker on it and reads the repository index (models the
    cuda backend refuses must say why);
 3. checks every model's outputs against ONNX Runtime on the CPU at several
    batch sizes: max|gpu - cpu| / max|cpu| within 1e-4 (fp32) or 1e-2 (fp16);
 4. measures throughput at batch 1, 8, 64 and 256 through the worker's gRPC
    API (bin/gpu-check-client bench), beside PyTorch eager running the same
    network (weights read from the same ONNX file) on the same GPU;
 5. times every step of the cuda backend in-process (CUDA events) and the
    largest GEMM of each network against cuBLAS's own rate for that shape
    (torch.matmul);
 6. writes DIR/results.json, DIR/results.md (tables for docs/benchmarks.md)
    and DIR/worker.log.

--backend onnxruntime runs the same flow with the models on the CPU backend:
a self-test of this script on a machine without a GPU (no PyTorch needed).
"""

import argparse
import glob
import json
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(HERE, "bin")
MODELS = os.path.join(HERE, "models")
BATCHES = [1, 8, 64, 256]
MAX_BATCH = 256

# ONNX TensorProto element types -> numpy, KServe datatype.
ONNX_TYPES = {1: (np.float32, "FP32"), 6: (np.int32, "INT32"), 7: (np.int64, "INT64"),
              10: (np.float16, "FP16"), 11: (np.float64, "FP64"), 9: (np.bool_, "BOOL")}
KSERVE_NP = {"FP32": np.float32, "FP16": np.float16, "INT32": np.int32, "INT64": np.int64,
             "FP64": np.float64, "BOOL": np.bool_}

START = time.time()


def log(*a):
    print(f"[{time.time() - START:6.1f}s]", *a, flush=True)


# ---------------------------------------------------------------------------
# A minimal protobuf reader for ONNX initializers (no onnx package here).

def _varint(b, i):
    shift = result = 0
    while True:
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        if not c & 0x80:
            return result, i
        shift += 7


def _fields(b):
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(b, i)
        elif wire == 1:
            v, i = b[i:i + 8], i + 8
        elif wire == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wire == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"protobuf wire type {wire}")
        yield field, wire, v


def _tensor(b):
    dims, dtype, name, raw, floats, int64s = [], 1, "", None, [], []
    for f, w, v in _fields(b):
        if f == 1:
            if w == 2:
                j = 0
                while j < len(v):
                    d, j = _varint(v, j)
                    dims.append(d)
            else:
                dims.append(v)
        elif f == 2:
            dtype = v
        elif f == 8:
            name = bytes(v).decode()
        elif f == 9:
            raw = bytes(v)
        elif f == 4:
            floats += list(struct.unpack(f"<{len(v) // 4}f", v)) if w == 2 else [struct.unpack("<f", v)[0]]
        elif f == 7:
            if w == 2:
                j = 0
                while j < len(v):
                    d, j = _varint(v, j)
                    int64s.append(d if d < 1 << 63 else d - (1 << 64))
            else:
                int64s.append(v)
    np_type = ONNX_TYPES[dtype][0]
    if raw is not None:
        arr = np.frombuffer(raw, dtype=np_type).copy()
    elif floats:
        arr = np.array(floats, dtype=np_type)
    else:
        arr = np.array(int64s, dtype=np_type)
    return name, arr.reshape(dims)


def onnx_initializers(path):
    """The initializers of an ONNX model file, by name."""
    data = open(path, "rb").read()
    out = {}
    for f, _, v in _fields(data):
        if f == 7:  # ModelProto.graph
            for g, _, t in _fields(v):
                if g == 5:  # GraphProto.initializer
                    name, arr = _tensor(t)
                    out[name] = arr
    return out


# ---------------------------------------------------------------------------
# The model repository.

# name -> (file, config parameters, network kind for PyTorch, max_batch_size)
def model_entries(backend):
    fp = lambda p: {} if backend != "cuda" else {"precision": p}
    nets = {}
    for net in ("mlp", "cnn", "encoder"):
        nets[net] = (net, fp("fp32"), net, MAX_BATCH)
        nets[net + "_fp16"] = (net, fp("fp16"), net, MAX_BATCH)
    if backend == "cuda":
        nets["mlp_fp16_graphs"] = ("mlp", {"precision": "fp16", "cuda_graph_batch_sizes": "1,8,64,256"}, "mlp", MAX_BATCH)
    nets["simple"] = ("simple", {}, None, 8)
    nets["identity_all"] = ("identity_all", {}, None, 0)
    nets["simple_string"] = ("simple_string", {}, None, 8)
    return nets


def config_pbtxt(name, backend, params, max_batch, instances):
    lines = [f'name: "{name}"', f'backend: "{backend}"', f"max_batch_size: {max_batch}"]
    kind = "KIND_GPU" if backend == "cuda" else "KIND_CPU"
    gpus = " gpus: [ 0 ]" if backend == "cuda" else ""
    lines.append(f"instance_group [ {{ count: {instances} kind: {kind}{gpus} }} ]")
    for k, v in params.items():
        lines.append(f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}')
    return "\n".join(lines) + "\n"


def write_repository(root, backend, instances):
    entries = model_entries(backend)
    for name, (f, params, _, max_batch) in entries.items():
        d = os.path.join(root, name, "1")
        os.makedirs(d)
        os.symlink(os.path.join(MODELS, f + ".onnx"), os.path.join(d, "model.onnx"))
        with open(os.path.join(root, name, "config.pbtxt"), "w") as out:
            out.write(config_pbtxt(name, backend, params, max_batch, instances if max_batch > 0 else 1))
    return entries


# ---------------------------------------------------------------------------
# The worker.

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cuda_library_dirs():
    """Folders of NVIDIA's pip wheels (cuBLAS, NVRTC) and PyTorch's own."""
    dirs = []
    for p in sys.path:
        for d in sorted(glob.glob(os.path.join(p, "nvidia", "*", "lib"))):
            if d not in dirs:
                dirs.append(d)
        t = os.path.join(p, "torch", "lib")
        if os.path.isdir(t) and t not in dirs:
            dirs.append(t)
    return dirs


class Worker:
    def __init__(self, repo, logpath, env):
        self.grpc, self.http, self.metrics = free_port(), free_port(), free_port()
        self.log = open(logpath, "w")
        # Metrics on: the GPU metrics (issue 5) are scraped after the runs.
        cmd = [os.path.join(BIN, "helix-worker"), "--model-repository", repo,
               "--grpc-port", str(self.grpc), "--http-port", str(self.http),
               "--metrics-port", str(self.metrics), "--metrics-address", "127.0.0.1",
               "--grpc-address", "127.0.0.1", "--http-address", "127.0.0.1",
               "--strict-readiness=false", "--log-format", "json", "--max-request-bytes", str(1 << 30),
               "--onnxruntime-library", os.path.join(BIN, "lib", "libonnxruntime.so")]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def url(self, path):
        return f"http://127.0.0.1:{self.http}{path}"

    def wait_ready(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"helix-worker exited with {self.proc.returncode} (see worker.log)")
            try:
                with urllib.request.urlopen(self.url("/v2/health/ready"), timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError("helix-worker did not become ready")

    def index(self):
        req = urllib.request.Request(self.url("/v2/repository/index"), data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def scrape(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10) as r:
            return r.read().decode()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# GPU metrics the worker must export on a GPU (docs/gpu-metrics.md): a few of
# dcgm-exporter's names with their labels, and Triton's.
GPU_METRICS = ["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_GPU_TEMP",
               "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK",
               "nv_gpu_utilization", "nv_gpu_memory_used_bytes", "nv_gpu_memory_total_bytes", "nv_gpu_power_usage"]


def check_gpu_metrics(text):
    """What /metrics says about the GPUs: each expected name present with a
    UUID label, and helix_gpu_count."""
    found, count = {}, None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name == "helix_gpu_count":
            count = float(line.rsplit(" ", 1)[1])
        if name in GPU_METRICS and ("UUID=\"GPU-" in line or "gpu_uuid=\"GPU-" in line):
            found.setdefault(name, line)
    missing = [n for n in GPU_METRICS if n not in found]
    return {"ok": bool(count) and not missing, "gpu_count": count, "missing": missing, "samples": found}


def client(*args, timeout=600):
    out = subprocess.run([os.path.join(BIN, "gpu-check-client"), *args], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"gpu-check-client {args[0]}: {out.stderr.strip()}")
    return out.stdout


# ---------------------------------------------------------------------------
# Inputs and the CPU reference.

def make_inputs(sess, batch, rng):
    """Inputs for an ONNX Runtime session's model at this batch size."""
    feeds = {}
    for i in sess.get_inputs():
        shape = [batch if (isinstance(d, str) or d is None or (j == 0 and d == -1)) else d
                 for j, d in enumerate(i.shape)]
        if i.type == "tensor(float)":
            feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
        elif i.type == "tensor(int64)":
            feeds[i.name] = rng.integers(0, 1000, shape).astype(np.int64)
        elif i.type == "tensor(int32)":
            feeds[i.name] = rng.integers(-1000, 1000, shape).astype(np.int32)
        else:
            return None
    return feeds


def write_manifest(d, feeds):
    os.makedirs(d, exist_ok=True)
    items = []
    for name, arr in feeds.items():
        f = f"in_{len(items)}.bin"
        np.ascontiguousarray(arr).tofile(os.path.join(d, f))
        dt = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64", np.dtype(np.int32): "INT32"}[arr.dtype]
        items.append({"name": name, "datatype": dt, "shape": list(arr.shape), "file": f})
    path = os.path.join(d, "inputs.json")
    with open(path, "w") as f:
        json.dump(items, f)
    return path


def read_outputs(d):
    outs = {}
    for o in json.load(open(os.path.join(d, "outputs.json"))):
        outs[o["name"]] = np.fromfile(os.path.join(d, o["file"]), dtype=KSERVE_NP[o["datatype"]]).reshape(o["shape"])
    return outs


def rel_err(got, want):
    got, want = got.astype(np.float64), want.astype(np.float64)
    scale = float(np.abs(want).max()) if want.size else 0.0
    diff = float(np.abs(got - want).max()) if want.size else 0.0
    if np.isnan(got).any():
        return math.inf, diff
    return (diff / scale if scale else diff), diff


# ---------------------------------------------------------------------------
# PyTorch eager: the same networks, weights from the ONNX files.

def torch_network(kind, path, torch, dtype):
    F = torch.nn.functional
    dev = torch.device("cuda")
    w = {k: torch.from_numpy(v).to(dev) for k, v in onnx_initializers(path).items()}
    for k, v in w.items():
        if v.is_floating_point():
            w[k] = v.to(dtype)

    if kind == "mlp":
        n = len([k for k in w if k.endswith(".weight")])

        def mlp(x):
            for i in range(1, n + 1):
                x = torch.addmm(w[f"fc{i}.bias"], x, w[f"fc{i}.weight"])
                if i < n:
                    x = F.relu(x)
            return (F.softmax(x, dim=-1),)
        return mlp

    if kind == "cnn":
        def cbr(x, p, stride, pad, bn=True):
            x = F.conv2d(x, w[f"{p}.weight"], w.get(f"{p}.bias"), stride=stride, padding=pad)
            if bn:
                x = F.batch_norm(x, w[f"{p}.bn.running_mean"], w[f"{p}.bn.running_var"], w[f"{p}.bn.weight"],
                                 w[f"{p}.bn.bias"], training=False, eps=1e-5)
            return F.relu(x)

        def cnn(x):
            x = F.max_pool2d(cbr(x, "conv1", 1, 1), 2, 2)
            x = cbr(x, "conv2", 1, 1)
            x = F.avg_pool2d(cbr(x, "conv3", 1, 0, bn=False), 2, 2)
            x = cbr(x, "conv4", 2, 1)
            x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
            return (F.softmax(torch.addmm(w["fc.bias"], x, w["fc.weight"]), dim=1),)
        return cnn

    if kind == "encoder":
        layers = len({k.split(".")[0] for k in w if k.startswith("layer")})
        dim = w["embeddings.token"].shape[1]
        heads = 4 if dim >= 64 else 2
        sizes = json.load(open(path[:-5] + ".json"))["sizes"] if os.path.exists(path[:-5] + ".json") else {}
        heads = sizes.get("heads", heads)
        gelu_tanh = False

        def ln(x, p):
            return F.layer_norm(x, (dim,), w[f"{p}.weight"], w[f"{p}.bias"], eps=1e-5)

        def lin(x, p):
            return torch.matmul(x, w[f"{p}.weight"]) + w[f"{p}.bias"]

        def encoder(ids):
            b, s = ids.shape
            x = ln(F.embedding(ids, w["embeddings.token"]) + w["embeddings.position"][:s], "embeddings.norm")
            dh = dim // heads
            for l in range(layers):
                p = f"layer{l}"
                q, k, v = lin(x, f"{p}.qkv").split(dim, dim=-1)
                q = q.view(b, s, heads, dh).transpose(1, 2)
                k = k.view(b, s, heads, dh).permute(0, 2, 3, 1)
                v = v.view(b, s, heads, dh).transpose(1, 2)
                a = F.softmax(torch.matmul(q, k) / math.sqrt(dh), dim=-1)
                c = torch.matmul(a, v).transpose(1, 2).reshape(b, s, dim)
                x = ln(x + lin(c, f"{p}.out"), f"{p}.norm1")
                h = F.gelu(lin(x, f"{p}.ffn1"), approximate="tanh" if gelu_tanh else "none")
                x = ln(x + lin(h, f"{p}.ffn2"), f"{p}.norm2")
            emb = torch.tanh(torch.addmm(w["pooler.bias"], x[:, 0], w["pooler.weight"]))
            return emb, F.linear(emb, w["classifier.weight"], w["classifier.bias"])
        return encoder
    raise ValueError(kind)


def time_calls(fn, sync, min_seconds):
    """Runs fn until min_seconds pass (at least 5 times), returns seconds per call."""
    for _ in range(3):
        fn()
    sync()
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        if n >= 5 and time.perf_counter() - start >= min_seconds:
            break
        if n % 20 == 0:
            sync()
    sync()
    return (time.perf_counter() - start) / n


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for results.json, results.md and worker.log")
    ap.add_argument("--backend", default="cuda", choices=["cuda", "onnxruntime"])
    ap.add_argument("--quick", action="store_true", help="shorter measurements")
    ap.add_argument("--budget", type=float, default=420, help="seconds after which remaining measurements are skipped")
    ap.add_argument("--instances", type=int, default=2, help="instances per network model")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    bench_secs = 1.5 if args.quick else 3.0
    results = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "backend": args.backend,
               "env": {}, "index": [], "correctness": [], "throughput": [], "torch": [], "profile": [], "gemm": [],
               "skipped": [], "goals": {}}

    def over_budget(what):
        if time.time() - START > args.budget:
            results["skipped"].append(what)
            return True
        return False

    import onnxruntime as ort
    env = results["env"]
    env["python"] = sys.version.split()[0]
    env["onnxruntime"] = ort.__version__
    torch = None
    if args.backend == "cuda":
        import torch as torch_mod
        torch = torch_mod
        env["torch"] = torch.__version__
        env["torch_cuda"] = torch.version.cuda
        env["gpu"] = torch.cuda.get_device_name(0)
        props = torch.cuda.get_device_properties(0)
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        env["compute_capability"] = f"{props.major}.{props.minor}"
    try:
        env["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                            "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    libdirs = cuda_library_dirs()
    env["cuda_library_dirs"] = libdirs
    log("environment:", json.dumps(env))

    work = tempfile.mkdtemp(prefix="helix-gpu-check-")
    repo = os.path.join(work, "repo")
    entries = write_repository(repo, args.backend, args.instances)
    # The worker and the in-process profiler (gpu-check-client) both load
    # cuBLAS and NVRTC from there.
    os.environ["HELIX_CUDA_LIBRARY_PATH"] = ":".join(libdirs)
    worker = Worker(repo, os.path.join(args.out, "worker.log"), dict(os.environ))
    try:
        serve(args, results, worker, entries, work, bench_secs, over_budget)
    except Exception as e:
        results.setdefault("errors", []).append(f"{type(e).__name__}: {e}")
        log("FAILED:", e)
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        worker.stop()
        sys.exit(2)
    worker.stop()

    if args.backend == "cuda":
        for phase in (lambda: run_torch(results, torch, entries, bench_secs, over_budget),
                      lambda: run_profiles(results, torch, over_budget)):
            try:
                phase()
            except Exception as e:  # keep what was measured; say what failed
                results.setdefault("errors", []).append(f"{type(e).__name__}: {e}")
                log("phase failed:", e)
    summarize(results)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(markdown(results))
    shutil.rmtree(work, ignore_errors=True)
    log("wrote", os.path.join(args.out, "results.json"), "and results.md")
    failed = [c for c in results["correctness"] if not c["ok"]]
    if failed:
        log(f"{len(failed)} correctness checks FAILED")
        sys.exit(1)
    if args.backend == "cuda" and not results.get("gpu_metrics", {}).get("ok"):
        log("the worker's GPU metrics check FAILED:", json.dumps(results.get("gpu_metrics")))
        sys.exit(1)


def serve(args, results, worker, entries, work, bench_secs, over_budget):
    """The worker's part: repository index, correctness, gRPC throughput."""
    import onnxruntime as ort
    env = results["env"]
    t = time.time()
    worker.wait_ready(300)
    env["worker_load_seconds"] = round(time.time() - t, 1)
    results["index"] = worker.index()
    ready = {m["name"] for m in results["index"] if m.get("state") == "READY"}
    for m in results["index"]:
        log(f"model {m['name']}: {m.get('state')} {m.get('reason', '')}")
    addr = f"127.0.0.1:{worker.grpc}"

    # Correctness against ONNX Runtime (CPU).
    rng = np.random.default_rng(1)
    sessions = {}
    for name, (f, params, kind, max_batch) in entries.items():
        if name not in ready:
            continue
        if f not in sessions:
            so = ort.SessionOptions()
            so.log_severity_level = 3
            sessions[f] = ort.InferenceSession(os.path.join(MODELS, f + ".onnx"), so, providers=["CPUExecutionProvider"])
        sess = sessions[f]
        tol = 1e-2 if params.get("precision") == "fp16" else 1e-4
        for batch in ([1, 5, min(64, max_batch)] if max_batch > 0 else [0]):
            feeds = make_inputs(sess, max(batch, 1), rng) if max_batch > 0 else None
            if feeds is None:
                continue
            d = os.path.join(work, "io", name, str(batch))
            manifest = write_manifest(d, feeds)
            want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
            entry = {"model": name, "batch": batch, "tolerance": tol, "outputs": {}}
            try:
                client("infer", "-addr", addr, "-model", name, "-in", manifest, "-out", os.path.join(d, "out"))
                got = read_outputs(os.path.join(d, "out"))
                ok = True
                for o, w in want.items():
                    rel, diff = rel_err(got[o], w)
                    entry["outputs"][o] = {"rel_err": rel, "max_abs": diff}
                    ok = ok and rel <= tol
                entry["ok"] = ok
            except (RuntimeError, KeyError, ValueError) as e:
                entry["ok"], entry["error"] = False, str(e)
            results["correctness"].append(entry)
            log(f"correctness {name} batch {batch}: {'ok' if entry['ok'] else 'FAILED'} {entry['outputs'] or entry.get('error')}")

    # Throughput through gRPC.
    for name in ["mlp", "mlp_fp16", "mlp_fp16_graphs", "cnn", "cnn_fp16", "encoder", "encoder_fp16"]:
        if name not in ready:
            continue
        f = entries[name][0]
        for batch in BATCHES:
            if over_budget(f"throughput {name} {batch}"):
                continue
            feeds = make_inputs(sessions[f], batch, np.random.default_rng(2))
            manifest = write_manifest(os.path.join(work, "bench", name, str(batch)), feeds)
            for conc in ([1, 4] if batch == 1 else [4]):
                try:
                    r = json.loads(client("bench", "-addr", addr, "-model", name, "-in", manifest, "-concurrency", str(conc),
                                          "-duration", f"{bench_secs}s", "-warmup", "1s"))
                except RuntimeError as e:
                    r = {"model": name, "batch": batch, "concurrency": conc, "error": str(e)}
                results["throughput"].append(r)
                log(f"grpc {name} batch {batch} concurrency {conc}: {r.get('items_per_s', 0):.0f} items/s, p50 {r.get('p50_ms', 0):.3f} ms")

    # The worker's GPU metrics, after the GPU did some work.
    try:
        results["gpu_metrics"] = check_gpu_metrics(worker.scrape())
    except OSError as e:
        results["gpu_metrics"] = {"ok": False, "error": str(e)}
    log("gpu metrics:", json.dumps({k: v for k, v in results["gpu_metrics"].items() if k != "samples"}))


def run_torch(results, torch, entries, secs, over_budget):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    sync = torch.cuda.synchronize
    for net in ("mlp", "cnn", "encoder"):
        path = os.path.join(MODELS, net + ".onnx")
        import onnxruntime as ort
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        for prec, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
            fn = torch_network(net, path, torch, dtype)
            # The PyTorch network is checked against ONNX Runtime first.
            feeds = make_inputs(sess, 4, np.random.default_rng(3))
            with torch.inference_mode():
                xs = [torch.from_numpy(v).cuda() for v in feeds.values()]
                xs = [x.to(dtype) if x.is_floating_point() else x for x in xs]
                outs = [o.float().cpu().numpy() for o in fn(*xs)]
            want = sess.run(None, feeds)
            check = max(rel_err(o, w)[0] for o, w in zip(outs, want))
            for batch in BATCHES:
                if over_budget(f"torch {net} {prec} {batch}"):
                    continue
                feeds = make_inputs(sess, batch, np.random.default_rng(2))
                host = list(feeds.values())
                with torch.inference_mode():
                    dev = [torch.from_numpy(v).cuda() for v in host]
                    dev = [x.to(dtype) if x.is_floating_point() else x for x in dev]
                    compute = time_calls(lambda: fn(*dev), sync, secs / 2)

                    def end_to_end():
                        xs = [torch.from_numpy(v).cuda() for v in host]
                        xs = [x.to(dtype) if x.is_floating_point() else x for x in xs]
                        return [o.float().cpu() for o in fn(*xs)]
                    e2e = time_calls(end_to_end, sync, secs / 2)
                r = {"network": net, "precision": prec, "batch": batch, "check_rel_err_vs_ort": check,
                     "compute_items_per_s": batch / compute, "compute_ms": compute * 1e3,
                     "end_to_end_items_per_s": batch / e2e, "end_to_end_ms": e2e * 1e3}
                results["torch"].append(r)
                log(f"torch {net} {prec} batch {batch}: {r['compute_items_per_s']:.0f} items/s on the GPU, "
                    f"{r['end_to_end_items_per_s']:.0f} host to host (check vs ORT {check:.1e})")


def run_profiles(results, torch, over_budget):
    """The cuda backend in-process: per-step times, and its largest GEMM
    against torch.matmul (cuBLAS) on the same shape."""
    sync = torch.cuda.synchronize
    for net in ("mlp", "cnn", "encoder"):
        for prec in ("fp32", "fp16"):
            if over_budget(f"profile {net} {prec}"):
                continue
            try:
                prof = json.loads(client("profile", "-model-file", os.path.join(MODELS, net + ".onnx"), "-precision", prec,
                                         "-max-batch", str(MAX_BATCH), "-batches", "1,64,256", "-iters", "30"))
            except RuntimeError as e:
                results["profile"].append({"network": net, "precision": prec, "error": str(e)})
                log(f"profile {net} {prec}: {e}")
                continue
            for p in prof:
                p.update(network=net, precision=prec)
                results["profile"].append(p)
                log(f"engine {net} {prec} batch {p['batch']}: {p['engine_items_per_s']:.0f} items/s in-process, "
                    f"p50 {p['engine_p50_ms']:.3f} ms, device steps {p['steps_ms']:.3f} ms")
            big = [p for p in prof if p["batch"] == 256] or prof
            gemms = [s for s in big[0]["steps"] if s["kind"] == "gemm"]
            if not gemms:
                continue
            g = max(gemms, key=lambda s: s["m"] * s["n"] * s["k"] * s.get("batch", 1))
            dtype = torch.float16 if prec == "fp16" else torch.float32
            cnt = g.get("batch", 1)
            a = torch.randn(cnt, g["m"], g["k"], device="cuda", dtype=dtype)
            b = torch.randn(cnt, g["k"], g["n"], device="cuda", dtype=dtype)
            fn = (lambda: torch.matmul(a[0], b[0])) if cnt == 1 else (lambda: torch.bmm(a, b))
            secs = time_calls(fn, sync, 0.3)
            flops = 2 * g["m"] * g["n"] * g["k"] * cnt
            r = {"network": net, "precision": prec, "batch": big[0]["batch"], "node": g["node"],
                 "m": g["m"], "n": g["n"], "k": g["k"], "count": cnt,
                 "helix_ms": g["ms"], "helix_tflops": g.get("tflops", 0.0),
                 "cublas_ms": secs * 1e3, "cublas_tflops": flops / secs / 1e12,
                 "ratio": (flops / (g["ms"] / 1e3) / 1e12) / (flops / secs / 1e12) if g["ms"] > 0 else 0}
            results["gemm"].append(r)
            log(f"gemm {net} {prec} {g['node']} {g['m']}x{g['n']}x{g['k']}x{cnt}: {r['helix_tflops']:.1f} TFLOPS in helix, "
                f"{r['cublas_tflops']:.1f} in torch.matmul ({100 * r['ratio']:.0f}%)")


def summarize(results):
    goals = results["goals"]
    grpc = {(r["model"], r["batch"], r.get("concurrency")): r for r in results["throughput"] if "items_per_s" in r}
    torch_r = {(r["network"], r["precision"], r["batch"]): r for r in results["torch"]}
    for net in ("mlp", "cnn", "encoder"):
        g = grpc.get((net + "_fp16", 64, 4))
        t = torch_r.get((net, "fp16", 64))
        if g and t:
            goals[f"{net}_fp16_batch64_grpc_vs_torch_compute"] = g["items_per_s"] / t["compute_items_per_s"]
            goals[f"{net}_fp16_batch64_grpc_vs_torch_end_to_end"] = g["items_per_s"] / t["end_to_end_items_per_s"]
        e = [p for p in results["profile"] if p.get("network") == net and p.get("precision") == "fp16" and p.get("batch") == 64]
        if e and t:
            goals[f"{net}_fp16_batch64_engine_vs_torch_end_to_end"] = e[0]["engine_items_per_s"] / t["end_to_end_items_per_s"]
            goals[f"{net}_fp16_batch64_device_vs_torch_compute"] = (t["compute_ms"] / e[0]["steps_ms"]) if e[0]["steps_ms"] else 0
    for r in results["gemm"]:
        goals[f"{r['network']}_{r['precision']}_largest_gemm_vs_cublas"] = r["ratio"]
    p = grpc.get(("mlp", 1, 1))
    if p:
        goals["mlp_fp32_batch1_grpc_p50_ms"] = p["p50_ms"]
    e = [p for p in results["profile"] if p.get("network") == "mlp" and p.get("precision") == "fp32" and p.get("batch") == 1]
    if e:
        goals["mlp_fp32_batch1_engine_p50_ms"] = e[0]["engine_p50_ms"]
    goals["correctness_all_ok"] = all(c["ok"] for c in results["correctness"]) and bool(results["correctness"])


def markdown(results):
    env = results["env"]
    out = [f"GPU: {env.get('gpu', 'none')} ({env.get('nvidia_smi', '')}); PyTorch {env.get('torch', '-')} "
           f"(CUDA {env.get('torch_cuda', '-')}), onnxruntime {env.get('onnxruntime')}; run {results['started']}.", ""]
    out += ["Correctness (max|gpu - onnxruntime cpu| / max|onnxruntime cpu|):", "",
            "| model | batch | worst output | relative error | tolerance | ok |", "|---|---|---|---|---|---|"]
    for c in results["correctness"]:
        worst = max(c["outputs"].items(), key=lambda kv: kv[1]["rel_err"]) if c["outputs"] else ("-", {"rel_err": float("nan")})
        out.append(f"| {c['model']} | {c['batch']} | {worst[0]} | {worst[1]['rel_err']:.1e} | {c['tolerance']:.0e} | "
                   f"{'yes' if c['ok'] else 'NO ' + c.get('error', '')} |")
    gm = results.get("gpu_metrics", {})
    out += ["", f"GPU metrics on the worker's /metrics: {'ok' if gm.get('ok') else 'NOT OK'} "
            f"(helix_gpu_count {gm.get('gpu_count')}; missing: {', '.join(gm.get('missing', [])) or 'none'}"
            f"{'; error: ' + gm['error'] if 'error' in gm else ''})."]
    out += ["", "Repository index:", ""]
    for m in results["index"]:
        out.append(f"- {m['name']}: {m.get('state')} {m.get('reason', '')}".rstrip())
    torch_r = {(r["network"], r["precision"], r["batch"]): r for r in results["torch"]}
    out += ["", "Throughput, items/s (helix: gRPC, 4 requests in flight; PyTorch eager: inputs already on the GPU / host to host):", "",
            "| model | batch | helix gRPC | p50 ms | PyTorch on GPU | PyTorch host to host |", "|---|---|---|---|---|---|"]
    for r in results["throughput"]:
        if "items_per_s" not in r:
            out.append(f"| {r['model']} | {r['batch']} | error: {r.get('error', '')} | | | |")
            continue
        net, _, prec = r["model"].partition("_")
        prec = "fp16" if prec.startswith("fp16") else "fp32"
        t = torch_r.get((net, prec, r["batch"]), {})
        out.append(f"| {r['model']} (c={r['concurrency']}) | {r['batch']} | {r['items_per_s']:.0f} | {r['p50_ms']:.3f} | "
                   f"{t.get('compute_items_per_s', 0):.0f} | {t.get('end_to_end_items_per_s', 0):.0f} |")
    out += ["", "In-process engine (cuda backend without gRPC) and summed device step time:", "",
            "| network | precision | batch | items/s | p50 ms | device steps ms |", "|---|---|---|---|---|---|"]
    for p in results["profile"]:
        if "error" in p:
            out.append(f"| {p['network']} | {p['precision']} | - | error: {p['error']} | | |")
            continue
        out.append(f"| {p['network']} | {p['precision']} | {p['batch']} | {p['engine_items_per_s']:.0f} | "
                   f"{p['engine_p50_ms']:.3f} | {p['steps_ms']:.3f} |")
    out += ["", "Largest GEMM per network at batch 256 vs cuBLAS (torch.matmul, same shape):", "",
            "| network | precision | GEMM (M×N×K×count) | helix TFLOPS | cuBLAS TFLOPS | ratio |", "|---|---|---|---|---|---|"]
    for g in results["gemm"]:
        out.append(f"| {g['network']} | {g['precision']} | {g['m']}×{g['n']}×{g['k']}×{g['count']} | {g['helix_tflops']:.1f} | "
                   f"{g['cublas_tflops']:.1f} | {100 * g['ratio']:.0f}% |")
    out += ["", "Goals:", ""] + [f"- {k}: {v:.3g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in results["goals"].items()]
    if results["skipped"]:
        out += ["", "Skipped (time budget): " + ", ".join(results["skipped"])]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
