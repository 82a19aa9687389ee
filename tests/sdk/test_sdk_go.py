"""The Go SDK (sdk/go, a module of its own) against the running stack: its
`go test ./...` with HELIX_STACK_ENV set to the stack's local.env runs the
unit tests and the stack tests (sdk/go/helixflow/stack_test.go), which make
their own clients through the admin API (HELIX_ADMIN_URL/TOKEN in local.env).
About 50 s, which run in the background beside the Python SDK's tests
(conftest.py): one test calls the gateway for two token lifetimes."""

import subprocess

from helixstack import ROOT
from sdk_jobs import SDK_GO, go_env, tool


def run(args, env=None, timeout=600):
    return subprocess.run(args, cwd=SDK_GO, env=env, capture_output=True, text=True, timeout=timeout)


def test_go_sdk_against_the_stack(sdk_background):
    code, stdout, stderr = sdk_background["go"].result(timeout=600)
    passed = [line for line in stdout.splitlines() if line.startswith("--- PASS: TestStack")]
    assert code == 0, f"go test ./... in sdk/go failed:\n{stdout[-8000:]}\n{stderr[-4000:]}"
    # Each stack test ran (none skipped for want of the stack).
    assert len(passed) >= 7, "\n".join(passed)
    assert "--- SKIP" not in stdout


def test_go_sdk_is_gofmt_and_vet_clean():
    out = run(["gofmt", "-l", "."])
    assert out.returncode == 0 and out.stdout == "", f"not gofmt-clean:\n{out.stdout}{out.stderr}"
    out = run([tool("go", "the Go SDK needs Go 1.26"), "vet", "-tags=stack", "./..."], env=go_env())
    assert out.returncode == 0, out.stderr


def test_go_sdk_stubs_are_the_platforms():
    """scripts/gen-proto.sh generates sdk/go/inference from the same protos as
    proto/inference, only under another import path: the files are the same
    (both are package inference and import no other package of ours), so a
    proto change regenerated for one and not the other shows here."""
    platform = ROOT / "proto" / "inference"
    sdk = SDK_GO / "inference"
    names = sorted(p.name for p in platform.glob("*.pb.go"))
    assert names == sorted(p.name for p in sdk.glob("*.pb.go"))
    for name in names:
        assert (sdk / name).read_text() == (platform / name).read_text(), f"sdk/go/inference/{name} is stale: run make proto"
