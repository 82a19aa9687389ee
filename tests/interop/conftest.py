"""Interop tests: the real tritonclient and perf_analyzer against a real
helix-worker serving the sample models on ONNX Runtime.

`make test-interop` builds the worker and the models first. Nothing here is
skipped for a missing dependency: a missing binary, model or client fails.
"""

import os
import pathlib
import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKER = ROOT / "bin" / "helix-worker"
MODELS = ROOT / "models"
SAMPLE_MODELS = ["simple", "simple_string", "mlp", "identity_all", "simple_sequence", "simple_dyna_sequence",
                 "simple_string_dyna_sequence", "preprocess", "mlp_ensemble", "repeat_int32"]
# Models that are config.pbtxt and an empty version folder (no model file).
CONFIG_ONLY_MODELS = {"mlp_ensemble", "repeat_int32"}


_handed_out = set()


def free_port():
    """A port that was free on 127.0.0.1 a moment ago, from below the
    kernel's ephemeral range (as internal/freeport does), so that no
    outgoing connection can take it before the server binds it. A port is
    handed out once per test process: a worker's three ports are picked
    before it binds any of them, so a free port must not come twice."""
    for _ in range(200):
        port = random.randint(20000, 32767)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port in 20000-32767")


class Worker:
    def __init__(self, repo, extra_args=()):
        self.repo = repo
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self.http_url = f"127.0.0.1:{self.http_port}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.log = tempfile.NamedTemporaryFile(prefix="helix-worker-", suffix=".log", delete=False)
        args = [
            str(WORKER), f"--model-repository={repo}",
            "--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
            f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}", f"--metrics-port={self.metrics_port}",
            *extra_args,
        ]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_live()

    def _wait_live(self):
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"helix-worker exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"helix-worker not ready after 60s:\n{self.logs()}")

    def logs(self):
        return pathlib.Path(self.log.name).read_text(errors="replace")

    def metrics(self):
        with urllib.request.urlopen(self.metrics_url, timeout=5) as r:
            return r.read().decode()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.unlink(self.log.name)


@pytest.fixture(scope="session")
def repo(tmp_path_factory):
    """A repository with the sample models plus broken ones."""
    if not WORKER.exists():
        pytest.fail(f"{WORKER} is missing: run `make build`")
    for m in SAMPLE_MODELS:
        want = MODELS / m / "1" if m in CONFIG_ONLY_MODELS else MODELS / m / "1" / "model.onnx"
        if not want.exists():
            pytest.fail(f"sample model {m} is missing: run `make models`")
    repo = tmp_path_factory.mktemp("repo")
    for m in SAMPLE_MODELS:
        (repo / m).symlink_to(MODELS / m)
    batched = repo / "mlp_batched"
    (batched / "1").mkdir(parents=True)
    (batched / "1" / "model.onnx").symlink_to(MODELS / "mlp" / "1" / "model.onnx")
    config = (MODELS / "mlp" / "config.pbtxt").read_text().replace('name: "mlp"', 'name: "mlp_batched"')
    config = config.replace("max_queue_delay_microseconds: 200", "max_queue_delay_microseconds: 50000")
    assert "50000" in config and "mlp_batched" in config
    (batched / "config.pbtxt").write_text(config)
    bad = repo / "broken_config"
    (bad / "1").mkdir(parents=True)
    shutil.copy(MODELS / "simple" / "1" / "model.onnx", bad / "1" / "model.onnx")
    (bad / "config.pbtxt").write_text('name: "broken_config"\nmax_batch_size: "eight"\n')
    bad = repo / "broken_onnx"
    (bad / "1").mkdir(parents=True)
    (bad / "1" / "model.onnx").write_bytes(b"this is not an onnx file")
    return repo


@pytest.fixture(scope="session")
def worker(repo):
    w = Worker(repo, ["--model-control-mode=explicit", "--load-model=*", "--strict-readiness=false"])
    yield w
    w.stop()


@pytest.fixture(scope="session")
def grpc_client(worker):
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(worker.grpc_url)


@pytest.fixture(scope="session")
def http_client(worker):
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(worker.http_url, concurrency=16)
