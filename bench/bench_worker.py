"""Benchmark helix-worker against a no-op KServe v2 server (its floor),
Seldon MLServer and ONNX Runtime called directly, on the same models, in one
run (`make bench-worker`).

- helix-worker: bin/helix-worker serving models/ on free 127.0.0.1 ports.
- The no-op server (bench/kservenoop, built here into .tools/): the worker's
  protos and gRPC options, ModelConfig/ModelMetadata from config.pbtxt, and
  ModelInfer answered with zeros of each output's shape: no scheduler, no
  backend. helix-worker's goals are ratios to it: what the worker adds on
  top of gRPC and the client, which share the machine's cores.
- MLServer: stock MLServer from .venv-bench with our runtime (bench/mlserver/
  onnx_model.py: the same model.onnx on onnxruntime, default session options)
  and MLServer's adaptive batching set like the model's dynamic_batching;
  for models with dynamic_batching a second MLServer without adaptive
  batching too, and the 3x goal is checked against the faster of the two.
  MLServer has no Triton ModelConfig RPC, which perf_analyzer calls once at
  start; bench/mlserver/serve.py adds just that RPC (answers serialized here
  from config.pbtxt) and otherwise runs `mlserver start`.
- Both servers are measured by the same perf_analyzer, over gRPC, async
  requests (-a), batch 1, random inputs, at each concurrency; the servers
  take turns point by point so background load on a shared machine hits both
  alike. p50/p99 come from perf_analyzer's CSV (independent of --percentile).
- Direct ORT (bench/direct_ort.py, run with .venv-bench's onnxruntime, the
  version the worker loads): one thread calling session.run, default session
  options, batch sizes 1, 8, 64, 256 up to max_batch_size, measured before and
  after the servers; information only (it shares no cores with a client).
- --worker-variant LABEL=PATH (repeatable) adds another helix-worker binary,
  measured in turn with the others (for A/B runs of a change).

    .venv/bin/python bench/bench_worker.py [--quick] [--models simple,mlp]
        [--concurrency 1,8,64] [--model-repository DIR] [--worker-variant LABEL=PATH] [--no-mlserver]
        [--write docs/benchmarks.md]
"""

import argparse
import base64
import csv
import datetime
import json
import os
import platform
import resource
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import InferenceServerClient, model_config_pb2, service_pb2
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "bin" / "helix-worker"
NOOP = ROOT / ".tools" / "kservenoop"
PERF_ANALYZER = ROOT / ".venv" / "bin" / "perf_analyzer"
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"
MLSERVER_DIR = ROOT / "bench" / "mlserver"
DIRECT_ORT = ROOT / "bench" / "direct_ort.py"

BEGIN_MARK = "<!-- bench-worker:begin -->"
END_MARK = "<!-- bench-worker:end -->"
DOC_INTRO = """# Benchmarks

Measured numbers for HelixFlow's components. Each section is written by a
script named in it; rerun the script rather than editing the numbers.
"""

# Goals (docs/benchmarks.md states them next to the figures).
GOAL_VS_MLSERVER = 3.0   # helix throughput >= 3x MLServer's at concurrency 64
GOAL_VS_NOOP = 0.8       # simple: helix throughput >= 0.8x the no-op server's at concurrency 64
GOAL_P50_OVER_NOOP_US = 100  # simple: helix p50 <= the no-op's + 100 us at concurrency 1
GOAL_P50_US = 250        # simple: p50 latency at concurrency 1
GOAL_CONCURRENCY = 64
GOAL_MODEL = "simple"

ORT_BATCH_SIZES = (1, 8, 64, 256)
MAKE_COMMAND = ".venv/bin/python bench/bench_worker.py --write docs/benchmarks.md"
HELIX = "helix-worker"
NOOP_NAME = "no-op server"
MLSERVER = "MLServer"                     # adaptive batching set like dynamic_batching
MLSERVER_NB = "MLServer, no batching"     # the same without adaptive batching


@dataclass(frozen=True)
class Windows:
    """How long each measurement runs."""
    window_ms: int        # perf_analyzer time window; 3 windows are averaged
    warmup_per_conc: int  # warm-up requests per unit of concurrency
    ort_seconds: float    # direct ORT, per batch size


FULL = Windows(window_ms=5000, warmup_per_conc=20, ort_seconds=3.0)
QUICK = Windows(window_ms=1000, warmup_per_conc=5, ort_seconds=0.5)


class BenchError(Exception):
    pass


# ---------------------------------------------------------------------------
# Models


@dataclass
class Model:
    name: str
    onnx: Path
    config: model_config_pb2.ModelConfig

    @property
    def max_batch_size(self) -> int:
        return self.config.max_batch_size

    @property
    def instances(self) -> int:
        return sum(g.count or 1 for g in self.config.instance_group) or 1

    @property
    def batches_dynamically(self) -> bool:
        return self.batching_delay_us is not None and self.max_batch_size > 1

    @property
    def batching_delay_us(self):
        """The dynamic batcher's max queue delay, None without dynamic batching."""
        if not self.config.HasField("dynamic_batching"):
            return None
        return self.config.dynamic_batching.max_queue_delay_microseconds

    def tensors(self, which):
        """[{name, datatype (KServe), dims (without the batch dimension)}]."""
        ports = self.config.input if which == "input" else self.config.output
        out = []
        for p in ports:
            dtype = model_config_pb2.DataType.Name(p.data_type).removeprefix("TYPE_")
            out.append({"name": p.name, "datatype": "BYTES" if dtype == "STRING" else dtype,
                        "dims": list(p.dims)})
        return out

    def config_response(self) -> bytes:
        """Triton's ModelConfigResponse for this model, serialized."""
        return service_pb2.ModelConfigResponse(config=self.config).SerializeToString()


def load_model(repo: Path, name: str) -> Model:
    cfg_path, onnx = repo / name / "config.pbtxt", repo / name / "1" / "model.onnx"
    if not cfg_path.is_file():
        raise BenchError(f"no model {name!r} in {repo} ({cfg_path} is missing; `make models` writes the samples)")
    if not onnx.is_file():
        raise BenchError(f"{onnx} is missing: run `make models`")
    try:
        config = text_format.Parse(cfg_path.read_text(), model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        raise BenchError(f"{cfg_path}: {e}") from e
    if not config.name:
        config.name = name
    return Model(name=name, onnx=onnx, config=config)


# ---------------------------------------------------------------------------
# Servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree_cpu_seconds(pid: int) -> float:
    """User+system CPU seconds used so far by pid and its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After "pid (comm)": state ppid ... utime(12th) stime(13th).
        stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0))[1]
        todo.extend(c for c, (ppid, _) in stats.items() if ppid == p)
    return total / tick


class Server:
    """A server process on 127.0.0.1 ports, in its own process group."""

    def __init__(self, name, args, *, models, http_port, grpc_port, log_path, env=None, has_stats):
        self.name = name
        self.models = models  # the models it serves and is measured on
        # None: gRPC only (readiness is asked over gRPC).
        self.http_url = f"http://127.0.0.1:{http_port}" if http_port else None
        self.grpc_url = f"127.0.0.1:{grpc_port}"
        self.has_stats = has_stats  # serves Triton's statistics extension
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=log_path.parent, start_new_session=True)

    def wait_ready(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        paths = ["/v2/health/ready"] + [f"/v2/models/{m.name}/ready" for m in self.models]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._grpc_ready() if self.http_url is None else all(self._get_ok(p) for p in paths):
                return
            time.sleep(0.2)
        raise BenchError(f"{self.name} not ready after {timeout_s}s:\n{self.log_tail()}")

    def _grpc_ready(self) -> bool:
        try:
            c = InferenceServerClient(self.grpc_url)
            try:
                return c.is_server_ready() and all(c.is_model_ready(m.name) for m in self.models)
            finally:
                c.close()
        except InferenceServerException:
            return False

    def _get_ok(self, path) -> bool:
        try:
            with urllib.request.urlopen(self.http_url + path, timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stats(self, model):
        """(inference_count, execution_count) from Triton's statistics extension."""
        with urllib.request.urlopen(f"{self.http_url}/v2/models/{model}/stats", timeout=5) as r:
            s = json.load(r)["model_stats"][0]
        return int(s["inference_count"]), int(s["execution_count"])

    def cpu_seconds(self) -> float:
        return process_tree_cpu_seconds(self.proc.pid)

    def log_tail(self, n=30) -> str:
        self._log.flush()
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def stop(self):
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()
        # MLServer's inference workers are in the same group: make sure none is left.
        self._signal(signal.SIGKILL)
        self._log.close()

    def _signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass


def start_helix(models, repo: Path, tmp: Path, name=HELIX, binary=WORKER) -> Server:
    if not binary.is_file():
        raise BenchError(f"{binary} is missing: run `make build`")
    http, grpc_, metrics = free_port(), free_port(), free_port()
    args = [str(binary), f"--model-repository={repo}", "--model-control-mode=explicit",
            *[f"--load-model={m.name}" for m in models],
            "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
            f"--http-port={http}", f"--grpc-port={grpc_}", f"--metrics-port={metrics}", "--log-level=warn"]
    slug = "".join(ch if ch.isalnum() else "-" for ch in name)
    return Server(name, args, models=models, http_port=http, grpc_port=grpc_,
                  log_path=tmp / f"{slug}.log", has_stats=True)


def build_noop():
    """Builds bench/kservenoop into .tools/ (go's cache makes a rebuild cheap)."""
    go = os.environ.get("GO", "go")
    res = subprocess.run([go, "build", "-tags=vtprotobuf", "-trimpath", "-o", str(NOOP), "./bench/kservenoop"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise BenchError(f"building bench/kservenoop failed:\n{res.stderr.strip()[-2000:]}")


def start_noop(models, repo: Path, tmp: Path) -> Server:
    grpc_ = free_port()
    args = [str(NOOP), f"--model-repository={repo}", f"--model={','.join(m.name for m in models)}",
            f"--address=127.0.0.1:{grpc_}"]
    return Server(NOOP_NAME, args, models=models, http_port=None, grpc_port=grpc_,
                  log_path=tmp / "kservenoop.log", has_stats=False)


def mlserver_model_settings(m: Model, adaptive_batching: bool) -> dict:
    def meta(which):
        batch = [-1] if m.max_batch_size > 0 else []
        return [{"name": t["name"], "datatype": t["datatype"], "shape": batch + t["dims"]}
                for t in m.tensors(which)]

    settings = {
        "name": m.name,
        "implementation": "onnx_model.OnnxModel",
        "platform": "onnxruntime_onnx",
        "inputs": meta("input"),
        "outputs": meta("output"),
        # As many ORT runs at once as helix-worker has instances.
        "parameters": {"uri": str(m.onnx), "extra": {"threads": m.instances}},
    }
    if adaptive_batching and m.batches_dynamically:
        # MLServer's adaptive batching, set like Triton's dynamic batcher.
        settings["max_batch_size"] = m.max_batch_size
        settings["max_batch_time"] = m.batching_delay_us / 1e6
    return settings


def start_mlserver(name, models, tmp: Path, workers: int, adaptive_batching: bool,
                   settings=mlserver_model_settings) -> Server:
    """MLServer serving models; settings(model, adaptive_batching) gives each
    model-settings.json (bench_torch.py passes its TorchScript runtime's)."""
    if not BENCH_PYTHON.is_file():
        raise BenchError(f"{BENCH_PYTHON} is missing: run `make deps-bench`")
    work = tmp / ("mlserver" if adaptive_batching else "mlserver-no-batching")
    folder = work / "models"
    http, grpc_, metrics = free_port(), free_port(), free_port()
    folder.mkdir(parents=True)
    (folder / "settings.json").write_text(json.dumps({
        "debug": False,  # True (the default) logs every request
        "host": "127.0.0.1", "http_port": http, "grpc_port": grpc_, "metrics_port": metrics,
        "parallel_workers": workers,
        "metrics_dir": str(work / "metrics"), "environments_dir": str(work / "envs"),
    }, indent=2))
    for m in models:
        (folder / m.name).mkdir()
        (folder / m.name / "model-settings.json").write_text(
            json.dumps(settings(m, adaptive_batching), indent=2))
    configs = work / "triton-configs.json"
    configs.write_text(json.dumps({m.name: base64.b64encode(m.config_response()).decode() for m in models}))
    env = dict(os.environ, PYTHONPATH=str(MLSERVER_DIR))
    args = [str(BENCH_PYTHON), str(MLSERVER_DIR / "serve.py"), "--triton-configs", str(configs), str(folder)]
    return Server(name, args, models=models, http_port=http, grpc_port=grpc_,
                  log_path=work / "mlserver.log", env=env, has_stats=False)


# ---------------------------------------------------------------------------
# Measurements


@dataclass
class Point:
    model: str
    server: str
    concurrency: int
    throughput: float = 0.0          # inferences/s
    p50_us: float = 0.0
    p99_us: float = 0.0
    queue_us: float | None = None    # server side, per request (None: not reported)
    compute_us: float | None = None
    avg_batch: float | None = None   # inferences per execution (helix only)
    client_cpu: float = 0.0          # CPU seconds per second of wall time
    server_cpu: float = 0.0
    error: str | None = None


def perf_analyzer_args(model, url, concurrency, win: Windows, csv_path):
    return [str(PERF_ANALYZER), "-m", model, "-u", url, "-i", "grpc", "-a",
            "--concurrency-range", f"{concurrency}:{concurrency}",
            "--measurement-mode", "time_windows", "-p", str(win.window_ms),
            # Take the first 3 windows: on a shared machine the stability check
            # could fail forever, and a failed check records nothing.
            "-s", "1000",
            "--warmup-request-count", str(max(20, win.warmup_per_conc * concurrency)),
            "-f", str(csv_path)]


def measure(server: Server, model: str, concurrency: int, win: Windows, tmp: Path) -> Point:
    pt = Point(model=model, server=server.name, concurrency=concurrency)
    slug = "".join(ch if ch.isalnum() else "-" for ch in server.name)
    csv_path = tmp / f"pa-{slug}-{model}-c{concurrency}.csv"
    before_stats = server.stats(model) if server.has_stats else None
    cpu0, child0, t0 = server.cpu_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    timeout_s = 60 + 20 * win.window_ms / 1000
    try:
        res = subprocess.run(perf_analyzer_args(model, server.grpc_url, concurrency, win, csv_path),
                             capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pt.error = f"perf_analyzer did not finish in {timeout_s:.0f}s"
        return pt
    elapsed = time.monotonic() - t0
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    pt.server_cpu = (server.cpu_seconds() - cpu0) / elapsed
    pt.client_cpu = (child1.ru_utime + child1.ru_stime - child0.ru_utime - child0.ru_stime) / elapsed
    if res.returncode != 0 or not csv_path.is_file():
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-8:])
        pt.error = f"perf_analyzer exited with {res.returncode}: {tail}"
        return pt
    with open(csv_path, newline="") as f:
        row = next(csv.DictReader(f))
    pt.throughput = float(row["Inferences/Second"])
    pt.p50_us, pt.p99_us = float(row["p50 latency"]), float(row["p99 latency"])
    if server.has_stats:
        pt.queue_us = float(row["Server Queue"])
        pt.compute_us = sum(float(row[k]) for k in
                            ("Server Compute Input", "Server Compute Infer", "Server Compute Output"))
        infers, execs = (a - b for a, b in zip(server.stats(model), before_stats))
        pt.avg_batch = infers / execs if execs else None
    return pt


def direct_ort(m: Model, win: Windows) -> dict[int, float]:
    """Inferences/s of direct ORT runs by batch size."""
    sizes = [b for b in ORT_BATCH_SIZES if b <= max(1, m.max_batch_size)]
    args = [str(BENCH_PYTHON), str(DIRECT_ORT), "--model", str(m.onnx),
            "--inputs", json.dumps(m.tensors("input")),
            "--batch-sizes", ",".join(map(str, sizes)), "--seconds", str(win.ort_seconds)]
    res = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise BenchError(f"direct ORT on {m.name} failed:\n{res.stderr.strip()[-2000:]}")
    return {r["batch_size"]: r["infer_per_s"] for r in json.loads(res.stdout)["results"]}


@dataclass
class DirectORT:
    """Direct ORT measured before and after the servers, whose figures
    move with the machine's background load."""
    before: dict[int, float]
    after: dict[int, float]

    def mean(self, b: int) -> float:
        return (self.before[b] + self.after[b]) / 2

    @property
    def best_batch(self) -> int:
        return max(self.before, key=self.mean)

    @property
    def best(self) -> float:
        return self.mean(self.best_batch)


# ---------------------------------------------------------------------------
# Report


def fmt(x, digits=0, none="n/a"):
    if x is None:
        return none
    return f"{x:,.{digits}f}"


def ratio(a, b):
    return a / b if a and b else None


def fmt_ratio(r):
    if r is None:
        return "n/a"
    return f"{r:.2f}x" if r >= 0.1 else f"{r:.2g}x"


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")),
                 platform.processor() or "unknown")
    mem_kb = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                  if ln.startswith("MemTotal:"))
    os_name = platform.platform()
    try:
        os_name = next(ln.split("=", 1)[1].strip('"') for ln in Path("/etc/os-release").read_text().splitlines()
                       if ln.startswith("PRETTY_NAME=")) + f", Linux {platform.release()}"
    except (OSError, StopIteration):
        pass
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": mem_kb / 2**20, "os": os_name}


def versions() -> dict:
    out = {}
    hw = subprocess.run([str(WORKER), "--version"], capture_output=True, text=True)
    out["helix-worker"] = (hw.stdout + hw.stderr).strip().removeprefix("helix-worker ") or "unknown"
    # The binary reports "0.0.0 (commit ...)"; deps.sh records the wheel's version.
    pa = subprocess.run([str(PERF_ANALYZER), "--version"], capture_output=True, text=True)
    built = (pa.stdout + pa.stderr).strip().removeprefix("Perf Analyzer Version ")
    try:
        wheel = (ROOT / ".deps" / "perf_analyzer" / "VERSION").read_text().split()[0]
    except (OSError, IndexError):
        wheel = "unknown"
    out["perf_analyzer"] = f"{wheel} (binary: {built or 'unknown'})"
    if not BENCH_PYTHON.is_file():
        return out
    mls = subprocess.run([str(BENCH_PYTHON), "-c", "import mlserver, onnxruntime; "
                          "print(mlserver.__version__, onnxruntime.__version__)"], capture_output=True, text=True)
    if mls.returncode == 0:
        out["mlserver"], out["onnxruntime"] = mls.stdout.split()
    return out


def goal_line(ok, text):
    return f"- {'met' if ok else 'MISSED' if ok is not None else 'not measured'}: {text}"


def render(points, ort, models, concurrencies, ctx) -> str:
    by = {(p.model, p.server, p.concurrency): p for p in points if not p.error}
    failed = {(p.model, p.server, p.concurrency) for p in points if p.error}
    cmax = max(concurrencies)
    helixes = [HELIX] + [label for label, _ in ctx["variants"]]  # helix-worker binaries measured
    mlservers = [MLSERVER, MLSERVER_NB] if ctx["mlserver"] else []

    def thr(model, server, c):
        p = by.get((model, server, c))
        return p.throughput if p else None

    win, mc, v = ctx["windows"], ctx["machine"], ctx["versions"]
    quick = " (quick: short windows, a smoke run only)" if ctx["quick"] else ""
    make = " (`make bench-worker`)" if ctx["command"] == MAKE_COMMAND else ""
    L = [
        f"Run {ctx['date']} with `{ctx['command']}`{make}{quick}; it took {ctx['took_s']:.0f} s.",
        "",
        f"Machine: {mc['cpu']}, {mc['cores']} cores, {mc['memory_gib']:.1f} GiB memory, {mc['os']}. "
        f"Load average (1 min) {ctx['load_before']:.2f} before the run and {ctx['load_after']:.2f} after: "
        "the machine is shared with other work, and perf_analyzer runs on the same cores as the servers.",
        "",
        f"Software: helix-worker {v.get('helix-worker', '?')}; perf_analyzer {v.get('perf_analyzer', '?')}"
        + (f"; MLServer {v.get('mlserver', '?')}; onnxruntime {v.get('onnxruntime', '?')} in MLServer and the "
           "direct runs, the version of the libonnxruntime.so helix-worker loads." if ctx["mlserver"] or ort else "."),
        "",
        "### How",
        "",
        "- Load: `perf_analyzer -m MODEL -u 127.0.0.1:PORT -i grpc -a --concurrency-range C:C "
        f"--measurement-mode time_windows -p {win.window_ms} -s 1000 "
        f"--warmup-request-count max(20,{win.warmup_per_conc}*C) -f out.csv` against every server: batch 1, "
        "random inputs, async gRPC requests. Figures are those of 3 windows together; p50/p99 come from the "
        "CSV. `-s 1000` accepts the first 3 windows (on a shared machine a stricter stability check can fail "
        "and then nothing is recorded). The servers run side by side and are measured in turn at each point, "
        "so background load falls on all of them alike.",
        f"- helix-worker: `bin/helix-worker --model-repository {ctx['repository']}` (explicit mode, loading the models "
        "measured), default flags otherwise (ONNX Runtime's default thread counts).",
        "- no-op server: bench/kservenoop, the floor: the worker's KServe v2 protos and gRPC server options, "
        "ModelConfig and ModelMetadata answered from config.pbtxt (read with workers/repository), ModelInfer "
        "with zeros of each output's datatype and shape; no scheduler, no backend. What helix-worker adds to "
        "it is the worker's own cost (decoding, scheduling, ONNX Runtime, encoding), measured with the same "
        "client on the same cores.",
    ]
    for label, path in ctx["variants"]:
        L.append(f"- {label}: helix-worker as above, binary `{path}` (an A/B variant).")
    left_out = [name for name, on in (("MLServer (--no-mlserver)", ctx["mlserver"]),
                                      ("direct ONNX Runtime (--no-ort)", bool(ort))) if not on]
    if left_out:
        L.append(f"- Left out of this run: {' and '.join(left_out)}.")
    if ctx["mlserver"]:
        L.append(
            f"- MLServer: stock `mlserver start` with parallel_workers {ctx['mlserver_workers']}"
            f"{' (inference in the main process)' if ctx['mlserver_workers'] == 0 else ''} and debug (per-request) "
            "logging off, serving a runtime of ours (bench/mlserver/onnx_model.py) that runs the same model.onnx "
            "with onnxruntime's Python API, default session options, on a thread pool as large as the model's "
            "instance count. `MLServer` has adaptive batching set from config.pbtxt where the model has "
            "dynamic_batching (max_batch_size, max_batch_time = max_queue_delay_microseconds); "
            "`MLServer, no batching` is the same without it. MLServer does not implement Triton's ModelConfig "
            "RPC, which perf_analyzer calls once before sending load: bench/mlserver/serve.py adds that one RPC, "
            "answering from config.pbtxt.")
    if ort:
        L.append(
            "- Direct ORT (bench/direct_ort.py), information only: one thread calling `session.run` in-process, "
            f"default session options, batch sizes 1, 8, 64, 256 up to the model's max_batch_size, "
            f"{win.ort_seconds:g} s each, before and after the servers are measured. It shares no cores with a "
            "client, so it is no goal's yardstick (the no-op server is).")
    L += [
        "",
        "### Results",
        "",
        "| model | server | concurrency | infer/s | p50 (us) | p99 (us) | server queue (us) | "
        "server compute (us) | avg batch | server CPU | server CPU per infer (us) | client CPU |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in models:
        for server in helixes + [NOOP_NAME] + mlservers:
            for c in concurrencies:
                if (m.name, server, c) in failed:
                    L.append(f"| {m.name} | {server} | {c} | failed | | | | | | | | |")
                p = by.get((m.name, server, c))
                if p is None:
                    continue
                per = p.server_cpu / p.throughput * 1e6 if p.throughput else None
                L.append(f"| {m.name} | {server} | {c} | {fmt(p.throughput)} | {fmt(p.p50_us)} | "
                         f"{fmt(p.p99_us)} | {fmt(p.queue_us)} | {fmt(p.compute_us)} | {fmt(p.avg_batch, 1)} | "
                         f"{p.server_cpu:.2f} | {fmt(per)} | {p.client_cpu:.2f} |")
    L += [
        "",
        "Server queue and compute: per-request averages from the server's statistics extension, as "
        "perf_analyzer reports them (the rest of the latency is gRPC, loopback and the client); avg batch: "
        "inferences per execution over the run, warm-up included (the no-op server and MLServer have no "
        "statistics). Server CPU and client CPU (perf_analyzer): CPU-seconds per second while perf_analyzer ran, "
        "warm-up included (2.00 would be both cores); server CPU per infer is server CPU over infer/s.",
    ]
    if ort:
        L += [
            "",
            "Direct ONNX Runtime, no serving (information):",
            "",
            "| model | batch size | infer/s before the servers | after | mean |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for m in models:
            d = ort[m.name]
            for b in d.before:
                best = " (best)" if b == d.best_batch else ""
                L.append(f"| {m.name} | {b} | {fmt(d.before[b])} | {fmt(d.after[b])} | {fmt(d.mean(b))}{best} |")
    cols = ["/ no-op (throughput)", "p50 - no-op's (us)"]
    if mlservers:
        cols += ["/ MLServer", "/ best MLServer"]
    if ort:
        cols.append("/ direct ORT (best)")
    L += [
        "",
        "### Ratios",
        "",
        "| model | server | concurrency | " + " | ".join(cols) + " |",
        "| --- | --- | ---: |" + " ---: |" * len(cols),
    ]
    for m in models:
        for server in helixes:
            for c in concurrencies:
                h = thr(m.name, server, c)
                hp, np_ = by.get((m.name, server, c)), by.get((m.name, NOOP_NAME, c))
                row = [fmt_ratio(ratio(h, thr(m.name, NOOP_NAME, c))),
                       f"{hp.p50_us - np_.p50_us:+,.0f}" if hp and np_ else "n/a"]
                if mlservers:
                    mls = [t for t in (thr(m.name, s, c) for s in mlservers) if t]
                    row += [fmt_ratio(ratio(h, thr(m.name, MLSERVER, c))),
                            fmt_ratio(ratio(h, max(mls)) if mls else None)]
                if ort:
                    row.append(fmt_ratio(ratio(h, ort[m.name].best)))
                L.append(f"| {m.name} | {server} | {c} | " + " | ".join(row) + " |")
    at = f"concurrency {GOAL_CONCURRENCY}"
    if cmax != GOAL_CONCURRENCY:
        at += f" (measured at {cmax}, this run's highest concurrency)"
    L += ["", "### Goals", ""]
    if mlservers:
        for m in models:
            mls = [t for t in (thr(m.name, s, cmax) for s in mlservers) if t]
            r_best = ratio(thr(m.name, HELIX, cmax), max(mls)) if mls else None
            L.append(goal_line(r_best >= GOAL_VS_MLSERVER if r_best else None,
                               f"{m.name}: helix-worker >= {GOAL_VS_MLSERVER:g}x the throughput of MLServer (its "
                               f"faster configuration) at {at}: {fmt_ratio(r_best)}"))
    g = GOAL_MODEL
    r_noop = ratio(thr(g, HELIX, cmax), thr(g, NOOP_NAME, cmax))
    # Three decimals: 0.798 must not read as the goal's 0.80.
    L.append(goal_line(r_noop >= GOAL_VS_NOOP if r_noop else None,
                       f"{g}: helix-worker >= {GOAL_VS_NOOP:g}x the throughput of the no-op server at {at}: "
                       + (f"{r_noop:.3f}x" if r_noop else "n/a")))
    hp, np_ = by.get((g, HELIX, 1)), by.get((g, NOOP_NAME, 1))
    L.append(goal_line(hp.p50_us <= np_.p50_us + GOAL_P50_OVER_NOOP_US if hp and np_ else None,
                       f"{g}: helix-worker p50 latency at concurrency 1 <= the no-op server's + "
                       f"{GOAL_P50_OVER_NOOP_US} us: " + (f"{fmt(hp.p50_us)} us vs {fmt(np_.p50_us)} us "
                                                          f"({hp.p50_us - np_.p50_us:+,.0f} us)" if hp and np_
                                                          else "not in this run")))
    L.append(goal_line(hp.p50_us <= GOAL_P50_US if hp else None,
                       f"{g}: helix-worker p50 latency at concurrency 1 <= {GOAL_P50_US} us: "
                       + (f"{fmt(hp.p50_us)} us" if hp else "not in this run")))
    return "\n".join(L) + "\n"


def write_section(path: Path, body: str):
    section = f"{BEGIN_MARK}\n## helix-worker vs its no-op floor, MLServer and ONNX Runtime\n\n{body}{END_MARK}\n"
    text = path.read_text() if path.exists() else DOC_INTRO
    begin, end = text.find(BEGIN_MARK), text.find(END_MARK)
    if begin >= 0 and end > begin:
        rest = text[end + len(END_MARK):].lstrip("\n")
        text = text[:begin] + section + ("\n" + rest if rest else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# ---------------------------------------------------------------------------


def parse_list(s, conv=str):
    return [conv(x) for x in s.split(",") if x.strip()]


def main(argv=None) -> int:
    # `kill` (SIGTERM) unwinds like Ctrl-C, so the servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", type=Path, help="markdown file whose bench-worker section is replaced")
    p.add_argument("--quick", action="store_true", help="short measurement windows (smoke run)")
    p.add_argument("--models", default="simple,mlp", help="comma-separated models from the model repository")
    p.add_argument("--model-repository", type=lambda v: Path(v).resolve(), default=ROOT / "models",
                   help="the model repository every server serves (default models/, `make models`)")
    p.add_argument("--concurrency", default="1,8,64", help="comma-separated perf_analyzer concurrencies")
    p.add_argument("--worker-variant", action="append", default=[], metavar="LABEL=PATH",
                   help="another helix-worker binary to measure in turn with the others, labelled LABEL "
                        "(repeatable; for A/B runs of a change)")
    p.add_argument("--no-mlserver", action="store_true", help="leave MLServer out (its goal is then not measured)")
    p.add_argument("--no-ort", action="store_true", help="leave the direct ONNX Runtime runs out")
    p.add_argument("--mlserver-workers", type=int, default=0,
                   help="MLServer parallel_workers (default 0: inference in MLServer's main process; with "
                        "MLServer 1.7.1 and uvloop 0.23 the worker processes crash at start)")
    args = p.parse_args(argv)
    try:
        concurrencies = sorted(set(parse_list(args.concurrency, int)))
    except ValueError:
        p.error(f"--concurrency {args.concurrency!r}: want comma-separated whole numbers")
    if not concurrencies or min(concurrencies) < 1:
        p.error("--concurrency: want one or more numbers >= 1")
    variants = []
    for v in args.worker_variant:
        label, sep, path = v.partition("=")
        if not sep or not label.strip() or not path:
            p.error(f"--worker-variant {v!r}: want LABEL=PATH")
        if label in (HELIX, NOOP_NAME, MLSERVER, MLSERVER_NB) or label in (lb for lb, _ in variants):
            p.error(f"--worker-variant {v!r}: the label {label!r} is taken")
        variants.append((label, Path(path).resolve()))
    win = QUICK if args.quick else FULL
    needed = [(PERF_ANALYZER, "make deps"), (WORKER, "make build")]
    if not (args.no_mlserver and args.no_ort):
        needed.append((BENCH_PYTHON, "make deps-bench"))
    for tool, hint in needed:
        if not tool.exists():
            print(f"bench_worker: {tool} is missing: run `{hint}`", file=sys.stderr)
            return 2

    started = time.monotonic()
    try:
        models = [load_model(args.model_repository, n) for n in parse_list(args.models)]
        if not models:
            p.error("--models: name at least one model")
        ctx = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": shlex.join([os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT))
                                   else sys.executable, "bench/bench_worker.py", *(argv or sys.argv[1:])]),
            "quick": args.quick, "windows": win, "machine": machine(), "versions": versions(),
            "mlserver_workers": args.mlserver_workers, "load_before": os.getloadavg()[0],
            "mlserver": not args.no_mlserver, "repository": os.path.relpath(args.model_repository, ROOT), "variants": [(lb, os.path.relpath(p_, ROOT)) for lb, p_ in variants],
        }
        print("building bench/kservenoop ...", file=sys.stderr, flush=True)
        build_noop()
        ort_before = {}
        for m in models if not args.no_ort else []:
            print(f"direct ORT: {m.name} ...", file=sys.stderr, flush=True)
            ort_before[m.name] = direct_ort(m, win)
        points = []
        with tempfile.TemporaryDirectory(prefix="bench-worker-") as d:
            tmp = Path(d)
            servers = []
            try:
                repo = args.model_repository
                servers.append(start_helix(models, repo, tmp))
                for label, path in variants:
                    servers.append(start_helix(models, repo, tmp, name=label, binary=path))
                servers.append(start_noop(models, repo, tmp))
                if not args.no_mlserver:
                    servers.append(start_mlserver(MLSERVER, models, tmp, args.mlserver_workers,
                                                  adaptive_batching=True))
                    # MLServer's adaptive batching costs Python work per request; where
                    # it is on, MLServer without it is measured too, and the goal is
                    # checked against the faster of the two.
                    batching = [m for m in models if m.batches_dynamically]
                    if batching:
                        servers.append(start_mlserver(MLSERVER_NB, batching, tmp, args.mlserver_workers,
                                                      adaptive_batching=False))
                for s in servers:
                    s.wait_ready(timeout_s=120)
                for m in models:
                    for c in concurrencies:
                        for s in (s for s in servers if m in s.models):
                            print(f"{s.name} {m.name} c={c} ...", file=sys.stderr, flush=True)
                            pt = measure(s, m.name, c, win, tmp)
                            if pt.error:
                                print(f"  {pt.error}\n{s.log_tail(10)}", file=sys.stderr)
                            points.append(pt)
            finally:
                # A second SIGTERM must not cut the clean-up short.
                on_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
                for s in servers:
                    s.stop()
                signal.signal(signal.SIGTERM, on_term)
        ort = {}
        for m in models if not args.no_ort else []:
            print(f"direct ORT again: {m.name} ...", file=sys.stderr, flush=True)
            ort[m.name] = DirectORT(before=ort_before[m.name], after=direct_ort(m, win))
        ctx["load_after"] = os.getloadavg()[0]
        ctx["took_s"] = time.monotonic() - started
    except BenchError as e:
        print(f"bench_worker: {e}", file=sys.stderr)
        return 1

    report = render(points, ort, models, concurrencies, ctx)
    print(report)
    failed = [pt for pt in points if pt.error]
    if failed:
        print(f"bench_worker: {len(failed)} measurement(s) failed; {args.write or 'nothing'} not written",
              file=sys.stderr)
        return 1
    if args.write:
        write_section(args.write, report)
        print(f"bench_worker: wrote {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
