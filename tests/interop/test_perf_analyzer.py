"""A perf_analyzer smoke run against helix-worker: Triton's own load
generator must work unchanged over gRPC and HTTP."""

import pathlib
import re
import subprocess
import sys

import pytest

PERF_ANALYZER = pathlib.Path(sys.executable).parent / "perf_analyzer"


@pytest.mark.parametrize("protocol,url_attr", [("grpc", "grpc_url"), ("http", "http_url")])
def test_perf_analyzer_smoke(worker, protocol, url_attr):
    if not PERF_ANALYZER.exists():
        pytest.fail(f"{PERF_ANALYZER} is missing: run `make deps`")
    cmd = [
        str(PERF_ANALYZER), "-m", "simple", "-i", protocol, "-u", getattr(worker, url_attr),
        "--concurrency-range", "1:2", "--measurement-interval", "1000", "--stability-percentage", "999",
        "--max-trials", "3",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    rates = [float(x) for x in re.findall(r"Concurrency: \d+, throughput: ([\d.]+) infer/sec", out.stdout)]
    assert len(rates) == 2 and all(r > 0 for r in rates), out.stdout
