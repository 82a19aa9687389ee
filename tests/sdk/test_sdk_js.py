"""The JavaScript example (sdk/js: Node 20, fetch for REST, the `ws` package
pinned in package.json/package-lock.json for WebSocket) against the running
stack: `npm ci` (node_modules is gitignored), then its node:test suite
(sdk/js/test) and the example program. About 35 s: one test streams for
longer than a token's lifetime; it runs in the background beside the Python
SDK's tests (conftest.py)."""

import json
import subprocess

from sdk_jobs import SDK_JS, tool


def test_js_example_suite_against_the_stack(sdk_background):
    code, stdout, stderr = sdk_background["js"].result(timeout=300)
    assert code == 0, f"node --test in sdk/js:\n{stdout[-8000:]}\n{stderr[-4000:]}"
    # Every test ran and passed (the spec reporter's summary lines).
    assert "ℹ fail 0" in stdout and "ℹ skipped 0" in stdout and "ℹ pass 6" in stdout, stdout[-4000:]


def test_js_example_program(sdk_background):
    out = subprocess.run([tool("node", "the JavaScript example needs Node 20"), "example.mjs", "--count", "20"],
                         cwd=SDK_JS, env=sdk_background["js_env"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary == {"rest_sum": [i + 1 for i in range(16)], "websocket_answers": 20, "websocket_ok": True}
