"""The SDKs (sdk/python, sdk/go) and the JavaScript example against the
running stack (issue 19). The stack is the one the Python suites share
(tests/helixstack.py)."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from helixstack import ROOT, helix_stack  # noqa: E402,F401  (helix_stack: a fixture)

SDK = ROOT / "sdk"
