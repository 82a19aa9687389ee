"""The SDKs (sdk/python, sdk/go) and the JavaScript example against the
running stack (issue 19). The stack is the one the Python suites share
(tests/helixstack.py).

The Go and JavaScript suites run in the background (sdk_jobs.py) while the
Python SDK's tests run: they start with the first test of this folder, and
their pytest tests, ordered last, collect their results."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from helixstack import ROOT, helix_stack  # noqa: E402,F401  (helix_stack: a fixture)

import sdk_jobs  # noqa: E402

SDK = ROOT / "sdk"
_COLLECTORS = ("test_sdk_go.py", "test_sdk_js.py")


def pytest_collection_modifyitems(items):
    """The background suites' collectors after this folder's other tests
    (a stable sort within tests/sdk; other folders keep their order)."""
    here = pathlib.Path(__file__).parent
    mine = [i for i, it in enumerate(items) if it.path.parent == here]
    ordered = sorted((items[i] for i in mine), key=lambda it: it.path.name in _COLLECTORS)
    for i, it in zip(mine, ordered):
        items[i] = it


@pytest.fixture(scope="session", autouse=True)
def sdk_background(helix_stack):
    """The Go and JavaScript suites, started at once."""
    jobs = {"go": sdk_jobs.start_go(helix_stack)}
    jobs["js_env"] = sdk_jobs.js_env(helix_stack)
    jobs["js"] = sdk_jobs.start_js(jobs["js_env"])
    yield jobs
    jobs["go"].stop()
    jobs["js"].stop()
