"""Benchmark helix-worker's pytorch backend (`make bench-worker`, after
bench_worker.py): the TorchScript MLP (models/mlp_torch) on helix-worker vs
the same model.pt on MLServer (bench/mlserver/torch_model.py: a small runtime
calling torch, .venv-bench), and vs the same network on helix-worker's ONNX
path (models/mlp), in one run, at concurrency 1, 8 and 64; then libtorch and
ONNX Runtime alone in one process (information: the engines' own ratio).

Servers, load and figures are bench_worker.py's (its Server, perf_analyzer
command and Point): perf_analyzer over gRPC, async, batch 1, random inputs;
the servers take turns point by point. MLServer runs with adaptive batching
set like mlp_torch's dynamic_batching and without; the 3x goal is checked
against the faster.

    .venv/bin/python bench/bench_torch.py [--quick] [--concurrency 1,8,64] [--write docs/benchmarks.md]
"""

import argparse
import datetime
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_worker as bw  # noqa: E402

BEGIN_MARK = "<!-- bench-torch:begin -->"
END_MARK = "<!-- bench-torch:end -->"
MAKE_COMMAND = ".venv/bin/python bench/bench_torch.py --write docs/benchmarks.md"

TORCH_MODEL, ONNX_MODEL = "mlp_torch", "mlp"
HELIX_TORCH = "helix-worker (TorchScript)"
HELIX_ONNX = "helix-worker (ONNX)"
MLS = "MLServer + torch"
MLS_NB = "MLServer + torch, no batching"

GOAL_VS_MLSERVER = 3.0  # mlp_torch on helix >= 3x MLServer's throughput at concurrency 64
GOAL_VS_ONNX = 0.8      # mlp_torch on helix >= 0.8x mlp (ONNX) on helix at concurrency 64
GOAL_CONCURRENCY = 64


def load(repo: Path, name: str, file: str) -> bw.Model:
    cfg_path, path = repo / name / "config.pbtxt", repo / name / "1" / file
    for p in (cfg_path, path):
        if not p.is_file():
            raise bw.BenchError(f"{p} is missing: run `make models`")
    config = text_format.Parse(cfg_path.read_text(), model_config_pb2.ModelConfig())
    # bw.Model's `onnx` is the model file whatever its format.
    return bw.Model(name=name, onnx=path, config=config)


def torch_settings(m: bw.Model, adaptive_batching: bool) -> dict:
    s = bw.mlserver_model_settings(m, adaptive_batching)
    s["implementation"] = "torch_model.TorchModel"
    s["platform"] = "pytorch_libtorch"
    s["parameters"]["extra"]["inputs"] = [t["name"] for t in m.tensors("input")]
    s["parameters"]["extra"]["outputs"] = [t["name"] for t in m.tensors("output")]
    return s


# Both engines in one process, one thread each, the same inputs, the two
# runs interleaved so that the machine's background load hits both alike;
# best of the rounds. Run with .venv-bench's python (torch and onnxruntime
# 1.30.0, the library helix-worker loads).
ENGINES_SCRIPT = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np, onnxruntime as ort, torch
torch.set_num_threads(1)
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
sess = ort.InferenceSession(sys.argv[2], so, providers=["CPUExecutionProvider"])
module = torch.jit.freeze(torch.jit.load(sys.argv[1]).eval())  # as the worker's shim loads it
out = {}
with torch.inference_mode():
    for bs in (1, 8, 64):
        x = np.random.default_rng(bs).standard_normal((bs, 256)).astype(np.float32)
        xt = torch.from_numpy(x)
        runs = {"torch": lambda: module(xt), "onnxruntime": lambda: sess.run(None, {"input": x})}
        best = {k: 1e9 for k in runs}
        for f in runs.values():
            for _ in range(10): f()
        for _ in range(15):
            for k, f in runs.items():
                t = time.perf_counter()
                for _ in range(10): f()
                best[k] = min(best[k], (time.perf_counter() - t) / 10 * 1e6)
        out[bs] = best
print(json.dumps(out))
"""


def engines(torch_m: bw.Model, onnx_m: bw.Model) -> dict:
    """{batch: {"torch": us, "onnxruntime": us}} per forward of the MLP."""
    res = subprocess.run([str(bw.BENCH_PYTHON), "-c", ENGINES_SCRIPT, str(torch_m.onnx), str(onnx_m.onnx)],
                         capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        raise bw.BenchError(f"the in-process engine comparison failed:\n{res.stderr.strip()[-2000:]}")
    return {int(k): v for k, v in json.loads(res.stdout).items()}


def torch_version() -> str:
    res = subprocess.run([str(bw.BENCH_PYTHON), "-c", "import torch, mlserver; print(torch.__version__, mlserver.__version__)"],
                         capture_output=True, text=True)
    return res.stdout.strip() if res.returncode == 0 else "unknown"


def render(points, concurrencies, ctx) -> str:
    by = {(p.model, p.server, p.concurrency): p for p in points if not p.error}

    def thr(model, server, c):
        p = by.get((model, server, c))
        return p.throughput if p else None

    mc = ctx["machine"]
    make = " (`make bench-worker`)" if ctx["command"] == MAKE_COMMAND else ""
    quick = " (quick: short windows, a smoke run only)" if ctx["quick"] else ""
    L = [
        f"Run {ctx['date']} with `{ctx['command']}`{make}{quick}; it took {ctx['took_s']:.0f} s.",
        "",
        f"Machine: {mc['cpu']}, {mc['cores']} cores, {mc['memory_gib']:.1f} GiB memory, {mc['os']}. "
        f"Load average (1 min) {ctx['load_before']:.2f} before and {ctx['load_after']:.2f} after; perf_analyzer "
        "shares the cores with the servers.",
        "",
        f"Software: helix-worker {ctx['versions'].get('helix-worker', '?')} with libtorch 2.11.0 (the torch wheel's, "
        f"through .deps/pytorch/libhelix_torch.so); torch and MLServer in .venv-bench: {ctx['torch']}.",
        "",
        "### How",
        "",
        "- Models: `mlp_torch` (models/, scripts/make_torch_models.py) is `mlp`'s network and weights as "
        "TorchScript: 256-1024-1024-10, FP32, max_batch_size 256, dynamic batching (preferred 32, 64; 200 us), "
        "2 CPU instances. `mlp` is the ONNX file of the same network, on the same helix-worker process.",
        "- Load: bench_worker.py's perf_analyzer command (gRPC, async, batch 1, random inputs) at each "
        "concurrency, the servers taking turns point by point.",
        "- MLServer + torch: stock `mlserver start` (parallel_workers 0) with bench/mlserver/torch_model.py, "
        "which runs the same model.pt with `torch.jit.load` under `torch.inference_mode()` on a thread pool as "
        "large as the instance count, torch's default thread settings. `MLServer + torch` has adaptive batching "
        "set from config.pbtxt; `no batching` is without it.",
        "",
        "### Results",
        "",
        "| model | server | concurrency | infer/s | p50 (us) | p99 (us) | avg batch | server CPU |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model, server in ((TORCH_MODEL, HELIX_TORCH), (ONNX_MODEL, HELIX_ONNX), (TORCH_MODEL, MLS), (TORCH_MODEL, MLS_NB)):
        for c in concurrencies:
            p = by.get((model, server, c))
            if p is None:
                L.append(f"| {model} | {server} | {c} | failed | | | | |")
                continue
            L.append(f"| {model} | {server} | {c} | {bw.fmt(p.throughput)} | {bw.fmt(p.p50_us)} | {bw.fmt(p.p99_us)} | "
                     f"{bw.fmt(p.avg_batch, 1)} | {p.server_cpu:.2f} |")
    L += [
        "",
        "### Ratios (throughput of mlp_torch on helix-worker over ...)",
        "",
        "| concurrency | / MLServer + torch | / best MLServer + torch | / mlp on helix-worker's ONNX path |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for c in concurrencies:
        h = thr(TORCH_MODEL, HELIX_TORCH, c)
        mls = [t for t in (thr(TORCH_MODEL, s, c) for s in (MLS, MLS_NB)) if t]
        L.append(f"| {c} | {bw.fmt_ratio(bw.ratio(h, thr(TORCH_MODEL, MLS, c)))} | "
                 f"{bw.fmt_ratio(bw.ratio(h, max(mls)) if mls else None)} | "
                 f"{bw.fmt_ratio(bw.ratio(h, thr(ONNX_MODEL, HELIX_ONNX, c)))} |")
    if ctx.get("engines"):
        L += [
            "",
            "### The engines alone (information)",
            "",
            "The MLP in one process, no serving: libtorch (the frozen TorchScript module, as the worker loads "
            "it) and ONNX Runtime 1.30.0 (model.onnx), one intra-op thread each, the same inputs, runs "
            "interleaved, best of 15 rounds of 10 (microseconds per forward). Where the helix-worker ratio "
            "above is below 1, this is where it comes from: libtorch's CPU GEMM (MKL) is slower than ONNX "
            "Runtime's (MLAS, weights packed once at load) on this machine, most at small batches.",
            "",
            "| batch size | libtorch (us) | ONNX Runtime (us) | libtorch / ONNX Runtime time |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for b, e in sorted(ctx["engines"].items()):
            L.append(f"| {b} | {bw.fmt(e['torch'])} | {bw.fmt(e['onnxruntime'])} | {e['torch'] / e['onnxruntime']:.2f}x |")
    cmax = max(concurrencies)
    at = f"concurrency {GOAL_CONCURRENCY}" + ("" if cmax == GOAL_CONCURRENCY else f" (measured at {cmax})")
    h = thr(TORCH_MODEL, HELIX_TORCH, cmax)
    mls = [t for t in (thr(TORCH_MODEL, s, cmax) for s in (MLS, MLS_NB)) if t]
    r_mls = bw.ratio(h, max(mls)) if mls else None
    r_onnx = bw.ratio(h, thr(ONNX_MODEL, HELIX_ONNX, cmax))
    L += [
        "",
        "### Goals",
        "",
        bw.goal_line(r_mls >= GOAL_VS_MLSERVER if r_mls else None,
                     f"mlp_torch: helix-worker >= {GOAL_VS_MLSERVER:g}x the throughput of MLServer + torch (its faster "
                     f"configuration) at {at}: {bw.fmt_ratio(r_mls)}"),
        bw.goal_line(r_onnx >= GOAL_VS_ONNX if r_onnx else None,
                     f"mlp_torch: helix-worker >= {GOAL_VS_ONNX:g}x the throughput of the same network on its ONNX "
                     f"path at {at}: " + (f"{r_onnx:.3f}x" if r_onnx else "n/a")),
    ]
    return "\n".join(L) + "\n"


def write_section(path: Path, body: str):
    section = f"{BEGIN_MARK}\n## helix-worker's pytorch backend vs MLServer + torch and its ONNX path\n\n{body}{END_MARK}\n"
    text = path.read_text() if path.exists() else bw.DOC_INTRO
    begin, end = text.find(BEGIN_MARK), text.find(END_MARK)
    if begin >= 0 and end > begin:
        rest = text[end + len(END_MARK):].lstrip("\n")
        text = text[:begin] + section + ("\n" + rest if rest else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv=None) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", type=Path, help="markdown file whose bench-torch section is replaced")
    p.add_argument("--quick", action="store_true", help="short measurement windows (smoke run)")
    p.add_argument("--concurrency", default="1,8,64", help="comma-separated perf_analyzer concurrencies")
    p.add_argument("--model-repository", type=lambda v: Path(v).resolve(), default=bw.ROOT / "models")
    args = p.parse_args(argv)
    concurrencies = sorted(set(bw.parse_list(args.concurrency, int)))
    win = bw.QUICK if args.quick else bw.FULL
    for tool, hint in ((bw.PERF_ANALYZER, "make deps"), (bw.WORKER, "make build"), (bw.BENCH_PYTHON, "make deps-bench")):
        if not tool.exists():
            print(f"bench_torch: {tool} is missing: run `{hint}`", file=sys.stderr)
            return 2
    started = time.monotonic()
    points = []
    try:
        torch_m = load(args.model_repository, TORCH_MODEL, "model.pt")
        onnx_m = load(args.model_repository, ONNX_MODEL, "model.onnx")
        ctx = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": shlex.join([os.path.relpath(sys.executable, bw.ROOT) if sys.executable.startswith(str(bw.ROOT))
                                   else sys.executable, "bench/bench_torch.py", *(argv or sys.argv[1:])]),
            "quick": args.quick, "machine": bw.machine(), "versions": bw.versions(), "torch": torch_version(),
            "load_before": os.getloadavg()[0],
        }
        with tempfile.TemporaryDirectory(prefix="bench-torch-") as d:
            tmp = Path(d)
            servers = []
            try:
                helix = bw.start_helix([torch_m, onnx_m], args.model_repository, tmp)
                servers.append(helix)
                servers.append(bw.start_mlserver(MLS, [torch_m], tmp, 0, adaptive_batching=True, settings=torch_settings))
                servers.append(bw.start_mlserver(MLS_NB, [torch_m], tmp, 0, adaptive_batching=False, settings=torch_settings))
                for s in servers:
                    s.wait_ready(timeout_s=180)
                for c in concurrencies:
                    runs = [(helix, torch_m, HELIX_TORCH), (helix, onnx_m, HELIX_ONNX),
                            (servers[1], torch_m, MLS), (servers[2], torch_m, MLS_NB)]
                    for s, m, label in runs:
                        print(f"{label} {m.name} c={c} ...", file=sys.stderr, flush=True)
                        pt = bw.measure(s, m.name, c, win, tmp)
                        pt.server = label
                        if pt.error:
                            print(f"  {pt.error}\n{s.log_tail(10)}", file=sys.stderr)
                        points.append(pt)
            finally:
                on_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
                for s in servers:
                    s.stop()
                signal.signal(signal.SIGTERM, on_term)
        print("libtorch and ONNX Runtime in process ...", file=sys.stderr, flush=True)
        ctx["engines"] = engines(torch_m, onnx_m)
        ctx["load_after"] = os.getloadavg()[0]
        ctx["took_s"] = time.monotonic() - started
    except bw.BenchError as e:
        print(f"bench_torch: {e}", file=sys.stderr)
        return 1
    report = render(points, concurrencies, ctx)
    print(report)
    if any(pt.error for pt in points):
        print(f"bench_torch: a measurement failed; {args.write or 'nothing'} not written", file=sys.stderr)
        return 1
    if args.write:
        write_section(args.write, report)
        print(f"bench_torch: wrote {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
