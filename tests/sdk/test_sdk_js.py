"""The JavaScript example (sdk/js: Node 20, fetch for REST, the `ws` package
pinned in package.json/package-lock.json for WebSocket) against the running
stack: `npm ci` (node_modules is gitignored), then its node:test suite
(sdk/js/test) and the example program. About 35 s: one test streams for
longer than a token's lifetime."""

import json
import os
import shutil
import subprocess

import pytest

from helixstack import ROOT, TOKEN_LIFETIME

SDK_JS = ROOT / "sdk" / "js"


def tool(name):
    p = shutil.which(name)
    if p is None:
        pytest.fail(f"{name} is missing: the JavaScript example needs Node 20 and npm", pytrace=False)
    return p


@pytest.fixture(scope="module")
def js_env(helix_stack):
    out = subprocess.run([tool("npm"), "ci", "--no-audit", "--no-fund"], cwd=SDK_JS, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, f"npm ci in sdk/js:\n{out.stdout}\n{out.stderr}"
    free = helix_stack.client("sdk-js-free", "models:infer,models:read", plan="free")
    keyed = helix_stack.client("sdk-js-key", "models:infer,models:read")
    return dict(os.environ, **helix_stack.env,
                NODE_EXTRA_CA_CERTS=helix_stack.env["HELIX_CA_FILE"],
                HELIX_TEST_FREE_CLIENT_ID=free.id, HELIX_TEST_FREE_CLIENT_SECRET=free.secret,
                HELIX_TEST_API_KEY=helix_stack.api_key(keyed),
                HELIX_TEST_TOKEN_LIFETIME_S=str(TOKEN_LIFETIME))


def test_js_example_suite_against_the_stack(js_env):
    out = subprocess.run([tool("node"), "--test", "--test-reporter=spec", "test/"], cwd=SDK_JS, env=js_env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"node --test in sdk/js:\n{out.stdout[-8000:]}\n{out.stderr[-4000:]}"
    # Every test ran and passed (the spec reporter's summary lines).
    assert "ℹ fail 0" in out.stdout and "ℹ skipped 0" in out.stdout and "ℹ pass 6" in out.stdout, out.stdout[-4000:]


def test_js_example_program(js_env):
    out = subprocess.run([tool("node"), "example.mjs", "--count", "20"], cwd=SDK_JS, env=js_env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary == {"rest_sum": [i + 1 for i in range(16)], "websocket_answers": 20, "websocket_ok": True}
