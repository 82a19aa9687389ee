"""The Go SDK's and the JavaScript example's suites run as programs of
their own (go test, node --test) and spend most of their time waiting out
token lifetimes; conftest.py starts them in the background when the first
test of tests/sdk runs, beside the Python SDK's tests, and their pytest
tests collect the results."""

import os
import shutil
import subprocess
import tempfile

import pytest

from helixstack import ROOT, TOKEN_LIFETIME

SDK_GO = ROOT / "sdk" / "go"
SDK_JS = ROOT / "sdk" / "js"


def tool(name, why):
    p = shutil.which(name)
    if p is None:
        pytest.fail(f"{name} is missing: {why}", pytrace=False)
    return p


class Job:
    """A program running in the background, its output in temp files."""

    def __init__(self, args, cwd, env):
        self.args = args
        self.out = tempfile.TemporaryFile(mode="w+")
        self.err = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=self.out, stderr=self.err, text=True)

    def result(self, timeout):
        """(returncode, stdout, stderr), waiting at most timeout seconds."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.seek(0)
        self.err.seek(0)
        return self.proc.returncode, self.out.read(), self.err.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        self.err.close()


def go_env(stack=None):
    env = dict(os.environ, CI="true")
    if stack is not None:
        env["HELIX_STACK_ENV"] = stack.info["env_file"]
    # GOFLAGS of the platform (-tags=vtprotobuf) mean nothing in sdk/go.
    env.pop("GOFLAGS", None)
    return env


def start_go(stack):
    """sdk/go's go test -tags=stack ./... with HELIX_STACK_ENV: its unit
    tests and its stack tests, which make their own clients through the admin API
    (HELIX_ADMIN_URL/TOKEN in local.env)."""
    go = tool("go", "the Go SDK's tests need Go 1.26")
    return Job([go, "test", "-tags=stack", "-count=1", "-v", "./..."], SDK_GO, go_env(stack))


def js_env(stack):
    """npm ci (node_modules is gitignored), then the environment of the
    example's suite: the stack's local.env, a free-plan client and an API key."""
    out = subprocess.run([tool("npm", "the JavaScript example needs npm"), "ci", "--no-audit", "--no-fund"],
                         cwd=SDK_JS, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"npm ci in sdk/js:\n{out.stdout}\n{out.stderr}"
    free = stack.client("sdk-js-free", "models:infer,models:read", plan="free")
    keyed = stack.client("sdk-js-key", "models:infer,models:read")
    return dict(os.environ, **stack.env,
                NODE_EXTRA_CA_CERTS=stack.env["HELIX_CA_FILE"],
                HELIX_TEST_FREE_CLIENT_ID=free.id, HELIX_TEST_FREE_CLIENT_SECRET=free.secret,
                HELIX_TEST_API_KEY=stack.api_key(keyed),
                HELIX_TEST_TOKEN_LIFETIME_S=str(TOKEN_LIFETIME))


def start_js(env):
    """The example's node:test suite (sdk/js/test)."""
    node = tool("node", "the JavaScript example needs Node 20")
    return Job([node, "--test", "--test-reporter=spec", "test/"], SDK_JS, env)
