"""The whole stack for the Python suites that run against it (tests/websocket,
tests/openapi, tests/sdk, tests/docs): Postgres, Redis, mailpit, helix-authz,
helix-xds, Envoy's TLS listener and two helix-workers serving every sample
model, started by tests/stackd (internal/stack, as make run and e2e start
it), with helix-authz's tokens living TOKEN_LIFETIME so that expiry and
refresh can be waited out in a test.

`make test` runs those suites in one pytest process, and they share one
stack: each suite's conftest.py imports the `helix_stack` fixture from here;
the first suite to ask starts the stack, the last one to finish stops it.

A missing binary, Envoy or Python package fails the run (never a skip):
`make build models deps`.

HELIX_STACK_BIN_DIR replaces bin/ for helix-authz, helix-xds and
helix-worker. HELIX_STACK_INFO=path/info.json reuses a stack already started
with stackd (while writing tests) instead of starting one:

    go build -tags=vtprotobuf -o /tmp/stackd ./tests/stackd
    mkdir -m 711 /tmp/st && /tmp/stackd --root . --dir /tmp/st/state \\
        --out /tmp/st/info.json --token-lifetime=20s
    HELIX_STACK_INFO=/tmp/st/info.json .venv/bin/pytest -q tests/sdk
"""

import base64
import json
import os
import pathlib
import shlex
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = ROOT / "bin"

# Short enough to wait out in a test; long enough for the others' messages.
TOKEN_LIFETIME = 20


class Stack:
    """What a test needs to reach the running stack. `info` is stackd's JSON
    (tests/stackd/main.go, Info); `env` is its local.env as a dict, the
    variables a `make run` user sources (HELIX_HTTPS_URL, HELIX_GRPC_ADDR,
    HELIX_CA_FILE, HELIX_TOKEN_URL, HELIX_CLIENT_ID, ...)."""

    def __init__(self, info):
        self.info = info
        self.gateway = info["gateway"]  # host:port, gRPC and HTTPS
        self.https_url = "https://" + self.gateway
        self.url = "wss://" + self.gateway
        self.ca_file = info["ca_file"]
        self.token_url = info["token_url"]
        self.ssl = ssl.create_default_context(cafile=self.ca_file)
        self.env = read_env(info["env_file"])
        self.admin_env = dict(os.environ, HELIX_ADMIN_URL=info["admin_url"], HELIX_ADMIN_TOKEN=info["admin_token"])

    def helixctl(self, *args):
        out = subprocess.run([str(BIN / "helixctl"), *args], env=self.admin_env, capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise RuntimeError(f"helixctl {' '.join(args)}: {out.stderr}")
        return out.stdout

    def client(self, name, scopes, plan="standard", models="*"):
        """A new OAuth2 client (helixctl clients create)."""
        c = json.loads(self.helixctl("clients", "create", "--name", name, "--scope", scopes, "--model", models,
                                     "--plan", plan, "--output", "json"))
        return Client(self, c["client_id"], c["client_secret"])

    def api_key(self, client):
        """A new API key of client (helixctl apikeys create)."""
        return json.loads(self.helixctl("apikeys", "create", "--client", client.id, "--name", "test",
                                        "--output", "json"))["key"]

    def control(self, action, name):
        """stop (SIGTERM; a worker drains) or start a process by name."""
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
        """A fresh access token (client credentials grant, HTTP Basic)."""
        body = urllib.parse.urlencode({"grant_type": "client_credentials"}).encode()
        req = urllib.request.Request(self.stack.token_url, data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        req.add_header("Authorization", "Basic " + base64.b64encode(
            f"{urllib.parse.quote(self.id)}:{urllib.parse.quote(self.secret)}".encode()).decode())
        with urllib.request.urlopen(req, context=self.stack.ssl, timeout=20) as r:
            return json.load(r)["access_token"]


def mail_token(mailpit_url, email, path, deadline=30):
    """The token of the newest link to path (e.g. "/verify-email") that
    helix-authz mailed to email, read through mailpit's API."""
    end = time.monotonic() + deadline
    q = urllib.parse.quote(f"to:{email}")
    marker = path + "?token="
    while time.monotonic() < end:
        with urllib.request.urlopen(f"{mailpit_url}/api/v1/search?query={q}", timeout=10) as r:
            msgs = json.load(r).get("messages") or []
        for m in msgs:
            with urllib.request.urlopen(f"{mailpit_url}/api/v1/message/{m['ID']}", timeout=10) as r:
                text = json.load(r).get("Text", "")
            if marker in text:
                return urllib.parse.unquote(text.split(marker, 1)[1].split()[0])
        time.sleep(0.3)
    raise AssertionError(f"no {path} mail for {email} within {deadline}s")


def rss_kib(pid):
    """A process's resident memory in KiB (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def read_env(path):
    """The variables of a local.env (lines `export NAME=value`, shell-quoted)."""
    env = {}
    for line in pathlib.Path(path).read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export "):].partition("=")
            env[name] = shlex.split(value)[0] if value else ""
    return env


_shared = {"stack": None, "users": 0, "stop": None}


def _start(tmp_path_factory):
    if os.environ.get("HELIX_STACK_INFO"):
        return Stack(json.loads(pathlib.Path(os.environ["HELIX_STACK_INFO"]).read_text())), None
    bin_dir = pathlib.Path(os.environ.get("HELIX_STACK_BIN_DIR", str(BIN)))
    for b in ("helix-authz", "helix-xds", "helix-worker"):
        if not (bin_dir / b).exists():
            pytest.fail(f"{bin_dir / b} is missing: run `make build`", pytrace=False)
    if not (BIN / "helixctl").exists():
        pytest.fail(f"{BIN / 'helixctl'} is missing: run `make build`", pytrace=False)
    if not (ROOT / "models" / "simple" / "1" / "model.onnx").exists():
        pytest.fail("models/ is missing: run `make models`", pytrace=False)
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is missing (the suites build their launcher, tests/stackd)", pytrace=False)
    # Not pytest's tmp_path: Postgres, run as postgres under root, must
    # pass through every folder above its data.
    d = pathlib.Path(tempfile.mkdtemp(prefix="helix-stack-"))
    os.chmod(d, 0o711)
    stackd = tmp_path_factory.mktemp("bin") / "stackd"
    subprocess.run([go, "build", "-tags=vtprotobuf", "-o", str(stackd), "./tests/stackd"], cwd=ROOT, check=True,
                   timeout=600)
    info_path = d / "info.json"
    (d / "state").mkdir(mode=0o711)
    log = open(d / "stackd.log", "w")
    proc = subprocess.Popen([str(stackd), "--root", str(ROOT), "--dir", str(d / "state"), "--out", str(info_path),
                             f"--token-lifetime={TOKEN_LIFETIME}s", "--bin-dir", str(bin_dir)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while not info_path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"stackd did not start:\n{(d / 'stackd.log').read_text()[-4000:]}", pytrace=False)
        time.sleep(0.2)

    def stop(ok):
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if ok:
            shutil.rmtree(d, ignore_errors=True)

    return Stack(json.loads(info_path.read_text())), stop


@pytest.fixture(scope="session")
def helix_stack(tmp_path_factory):
    """The shared stack (see the module's docstring). Import it into a
    suite's conftest.py: `from helixstack import helix_stack`."""
    if _shared["stack"] is None:
        _shared["stack"], _shared["stop"] = _start(tmp_path_factory)
    _shared["users"] += 1
    ok = False
    try:
        yield _shared["stack"]
        ok = True
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0 and _shared["stop"] is not None:
            _shared["stop"](ok)
            _shared["stack"] = _shared["stop"] = None
