"""WebSocket inference (issue 16) through the real stack, shared with the
other suites that run against it (tests/helixstack.py: its docstring says
how to reuse a running stack while writing tests)."""

import pathlib
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from helixstack import ROOT, helix_stack  # noqa: E402,F401  (helix_stack: a fixture)

sys.path.insert(0, str(ROOT / "docs" / "examples"))


@pytest.fixture(scope="session")
def stack(helix_stack):
    return helix_stack


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
