"""WebSocket inference (issue 16) through the real stack: Postgres, Redis,
helix-authz, helix-xds, Envoy's TLS listener and two helix-workers serving
every sample model, started by tests/websocket/stackd (internal/stack, as
make run and e2e start it), with helix-authz's tokens living
TOKEN_LIFETIME so that the expiry test can wait one out.

Every connection asks for a fresh token. A missing binary, Envoy or
Python package fails the run (never a skip): `make build models deps`.

HELIX_WS_BIN_DIR replaces bin/ for helix-authz, helix-xds and helix-worker.
HELIX_WS_STACK_INFO=path/info.json reuses a stack already started with
stackd (while writing tests) instead of starting one."""

import base64
import json
import os
import pathlib
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = ROOT / "bin"
sys.path.insert(0, str(ROOT / "docs" / "examples"))

# Short enough to wait out in a test; long enough for the others' messages.
TOKEN_LIFETIME = 20


class Stack:
    def __init__(self, info):
        self.info = info
        self.gateway = info["gateway"]
        self.url = "wss://" + self.gateway
        self.ca_file = info["ca_file"]
        self.ssl = ssl.create_default_context(cafile=self.ca_file)
        self.admin_env = dict(os.environ, HELIX_ADMIN_URL=info["admin_url"], HELIX_ADMIN_TOKEN=info["admin_token"])

    def helixctl(self, *args):
        out = subprocess.run([str(BIN / "helixctl"), *args], env=self.admin_env, capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"helixctl {' '.join(args)}: {out.stderr}")
        return out.stdout

    def client(self, name, scopes, plan="standard", models="*"):
        c = json.loads(self.helixctl("clients", "create", "--name", name, "--scope", scopes, "--model", models,
                                     "--plan", plan, "--output", "json"))
        return Client(self, c["client_id"], c["client_secret"])

    def control(self, action, name):
        req = urllib.request.Request(f"{self.info['control']}/{action}?name={urllib.parse.quote(name)}", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=150) as r:
            assert r.status == 204

    def pids(self):
        with urllib.request.urlopen(self.info["control"] + "/pids", timeout=10) as r:
            return json.load(r)

    def log_tail(self, name, n=60):
        p = pathlib.Path(self.info["log_dir"]) / f"{name}.log"
        return "\n".join(p.read_text(errors="replace").splitlines()[-n:]) if p.exists() else ""


class Client:
    def __init__(self, stack, cid, secret):
        self.stack, self.id, self.secret = stack, cid, secret

    def token(self):
        body = urllib.parse.urlencode({"grant_type": "client_credentials"}).encode()
        req = urllib.request.Request(self.stack.info["token_url"], data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        req.add_header("Authorization", "Basic " + base64.b64encode(
            f"{urllib.parse.quote(self.id)}:{urllib.parse.quote(self.secret)}".encode()).decode())
        with urllib.request.urlopen(req, context=self.stack.ssl, timeout=20) as r:
            return json.load(r)["access_token"]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    if os.environ.get("HELIX_WS_STACK_INFO"):
        yield Stack(json.loads(pathlib.Path(os.environ["HELIX_WS_STACK_INFO"]).read_text()))
        return
    bin_dir = pathlib.Path(os.environ.get("HELIX_WS_BIN_DIR", str(BIN)))
    for b in ("helix-authz", "helix-xds", "helix-worker"):
        if not (bin_dir / b).exists():
            pytest.fail(f"{bin_dir / b} is missing: run `make build`", pytrace=False)
    if not (BIN / "helixctl").exists():
        pytest.fail(f"{BIN / 'helixctl'} is missing: run `make build`", pytrace=False)
    if not (ROOT / "models" / "simple" / "config.pbtxt").exists():
        pytest.fail("models/ is missing: run `make models`", pytrace=False)
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is missing (tests/websocket builds its launcher, stackd)", pytrace=False)
    # Not pytest's tmp_path: Postgres, run as postgres under root, must
    # pass through every folder above its data.
    d = pathlib.Path(tempfile.mkdtemp(prefix="helix-ws-"))
    os.chmod(d, 0o711)
    stackd = tmp_path_factory.mktemp("bin") / "stackd"
    subprocess.run([go, "build", "-tags=vtprotobuf", "-o", str(stackd), "./tests/websocket/stackd"], cwd=ROOT, check=True,
                   timeout=600)
    info_path = d / "info.json"
    (d / "state").mkdir(mode=0o711)
    log = open(d / "stackd.log", "w")
    proc = subprocess.Popen([str(stackd), "--root", str(ROOT), "--dir", str(d / "state"), "--out", str(info_path),
                             f"--token-lifetime={TOKEN_LIFETIME}s", "--bin-dir", os.environ.get("HELIX_WS_BIN_DIR", str(BIN))], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while not info_path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"stackd did not start:\n{(d / 'stackd.log').read_text()[-4000:]}", pytrace=False)
        time.sleep(0.2)
    ok = False
    try:
        yield Stack(json.loads(info_path.read_text()))
        ok = True
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if ok:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def clients(stack):
    """all: every model; simple_only: the scope of one model; free: the
    free plan (5 requests per second per model); read_only: no infer
    scope."""
    suffix = str(int(time.time() * 1000))
    return {
        "all": stack.client("ws-all-" + suffix, "models:infer,models:read"),
        "simple_only": stack.client("ws-simple-" + suffix, "models:simple:infer"),
        "free": stack.client("ws-free-" + suffix, "models:infer,models:read", plan="free"),
        "read_only": stack.client("ws-read-" + suffix, "models:read"),
    }
