"""The checks make test ends with: scripts/covercheck.py (per-package bars) and
scripts/govulncheck.py (reachable vulnerabilities against the waivers).
Their inputs here are written by hand in the tools' formats."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import covercheck  # noqa: E402
import govulncheck  # noqa: E402

M = covercheck.MODULE


def profile(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("mode: set\n" + "\n".join(lines) + "\n")
    return p


def test_coverage_merges_profiles_by_block(tmp_path):
    # The same block in two profiles (a main package's own tests and e2e's
    # binaries) counts once, covered when either covers it.
    a = profile(tmp_path, "a.out", [f"{M}cmd/helix-xds/main.go:1.1,2.2 3 0", f"{M}cmd/helix-xds/main.go:3.1,4.2 1 1"])
    b = profile(tmp_path, "b.out", [f"{M}cmd/helix-xds/main.go:1.1,2.2 3 5", f"{M}cmd/helix-xds/main.go:3.1,4.2 1 0"])
    pkgs = covercheck.read_profiles([a, b])
    p = pkgs[f"{M}cmd/helix-xds"]
    assert (p.statements, p.covered) == (4, 4)


@pytest.mark.parametrize(
    "pkg, covered, failing",
    [
        ("workers/tensor", 70, False),  # the default bar, met exactly
        ("workers/tensor", 69, True),
        ("xds/translate", 89, True),  # critical: 90
        ("xds/translate", 90, False),
        ("proto/inference", 0, False),  # exempt
        ("bench/internal/benchdoc", 10, False),  # exempt folder
    ],
)
def test_coverage_bars(tmp_path, pkg, covered, failing):
    lines = [f"{M}{pkg}/f.go:{i}.1,{i}.9 1 {1 if i < covered else 0}" for i in range(100)]
    pkgs = covercheck.read_profiles([profile(tmp_path, "p.out", lines)])
    text, under = covercheck.table(pkgs)
    assert bool(under) == failing
    assert f"| {pkg} | 100 | {covered:.1f}% |" in text


@pytest.mark.parametrize(
    "covered, status, failing",
    [
        (65, "under (listed, floor 60%)", False),
        (59, "**under**", True),  # lost coverage below its floor
        (70, "ok (delete its BELOW_BAR entry)", False),
    ],
)
def test_coverage_below_bar_floor(tmp_path, monkeypatch, covered, status, failing):
    monkeypatch.setattr(covercheck, "BELOW_BAR", {"internal/stack": (60.0, "why")})
    lines = [f"{M}internal/stack/f.go:{i}.1,{i}.9 1 {1 if i < covered else 0}" for i in range(100)]
    text, under = covercheck.table(covercheck.read_profiles([profile(tmp_path, "p.out", lines)]))
    assert bool(under) == failing
    assert f"| internal/stack | 100 | {covered:.1f}% | 70% | {status} |" in text
    assert "- `internal/stack` (floor 60%): why" in text


def test_coverage_rejects_garbage(tmp_path):
    with pytest.raises(ValueError, match="not a cover profile line"):
        covercheck.read_profiles([profile(tmp_path, "p.out", ["not a profile"])])


def test_coverage_main_fails_under_bar_and_writes_doc(tmp_path, capsys):
    p = profile(tmp_path, "p.out", [f"{M}xds/translate/f.go:1.1,2.2 1 0"])
    doc = tmp_path / "coverage.md"
    doc.write_text(f"intro\n{covercheck.BEGIN}\nold\n{covercheck.END}\nafter\n")
    assert covercheck.main(["--write", str(doc), str(p)]) == 1
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("after\n") and "old" not in text
    assert "| xds/translate | 1 | 0.0% | 90% | **under** |" in text
    assert "xds/translate: 0.0% < 90%" in capsys.readouterr().err


def stream(*objs):
    # govulncheck writes indented JSON objects one after another.
    return "\n".join(json.dumps(o, indent=2) for o in objs)


def finding(fid, function=None, package=None, module="stdlib"):
    frame = {"module": module, "version": "v1.26.8"}
    if package:
        frame["package"] = package
    if function:
        frame["function"] = function
    trace = [frame]
    if function:
        trace.append({"module": "github.com/helixflow/helixflow", "package": "github.com/helixflow/helixflow/x",
                      "function": "Caller", "position": {"filename": "x/x.go", "line": 7}})
    return {"finding": {"osv": fid, "fixed_version": "v1.26.9", "trace": trace}}


def test_govulncheck_parse_reachable_versus_imported():
    objs = govulncheck.decode_stream(stream(
        {"config": {"scanner_version": "v1.9.0"}},
        {"osv": {"id": "GO-2026-0001", "summary": "bad thing"}},
        finding("GO-2026-0001", package="net/http"),  # imported only...
        finding("GO-2026-0001", function="Serve", package="net/http"),  # ...and called
        finding("GO-2026-0002", package="net/http"),  # imported, never called
        finding("GO-2026-0003"),  # module only
    ))
    scan = govulncheck.parse(objs)
    assert list(scan.reachable) == ["GO-2026-0001"]
    f = scan.reachable["GO-2026-0001"]
    assert f.summary == "bad thing" and f.found == "stdlib@v1.26.8" and f.example == "github.com/helixflow/helixflow/x.Caller (x/x.go:7)"
    assert scan.imported_only == {"GO-2026-0002", "GO-2026-0003"}


def test_govulncheck_waivers(tmp_path):
    w = tmp_path / "waivers.txt"
    w.write_text("# comment\n\nGO-2026-0001 fixed by the Go upgrade # not a comment\nGO-2026-0009 stale\n")
    waivers = govulncheck.read_waivers(w)
    assert waivers == {"GO-2026-0001": "fixed by the Go upgrade # not a comment", "GO-2026-0009": "stale"}
    scans = {".": govulncheck.parse(govulncheck.decode_stream(stream(
        finding("GO-2026-0001", function="F", package="p"), finding("GO-2026-0002", function="G", package="p"))))}
    assert govulncheck.judge(scans, waivers) == (["GO-2026-0002"], ["GO-2026-0009"])


@pytest.mark.parametrize("line", ["GO-2026-0001", "CVE-2026-1 reason", "GO-2026-0001 a\nGO-2026-0001 b"])
def test_govulncheck_bad_waivers(tmp_path, line):
    w = tmp_path / "waivers.txt"
    w.write_text(line + "\n")
    with pytest.raises(SystemExit):
        govulncheck.read_waivers(w)
