"""The documentation site (issue 19): mkdocs builds it strictly (links and
anchors), the generated references match the code, and the code blocks
marked runnable run against the stack the Python suites share
(tests/helixstack.py)."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from helixstack import ROOT, helix_stack  # noqa: E402,F401  (helix_stack: a fixture)

DOCS = ROOT / "docs"
