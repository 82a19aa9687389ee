#!/usr/bin/env python3
"""govulncheck over HelixFlow's Go modules, against the offline database
that scripts/deps.sh builds (make deps), with written waivers.

    python3 scripts/govulncheck.py

It scans the main module (with the vtprotobuf tag, as it is built) and
grafana, prints each vulnerability that the code
can reach (a call path exists) and exits 1 when one is not waived in
scripts/govulncheck-waivers.txt, or when a waiver matches no reachable
finding any more (then delete it). Vulnerabilities in imported code that is
never called are counted, not failed. docs/vulnerabilities.md explains the
database, its date and how to refresh it.
"""

import json
import re
from concurrent.futures import ThreadPoolExecutor
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WAIVERS = ROOT / "scripts" / "govulncheck-waivers.txt"

# (module folder, extra govulncheck flags)
MODULES = (
    (".", ["-tags=vtprotobuf"]),
    ("grafana", []),
    ("sdk/go", []),
)


def pinned():
    """govulncheck's path and the database folder, from scripts/deps.sh (the
    one home of the versions)."""
    deps = (ROOT / "scripts" / "deps.sh").read_text()
    tool = re.search(r"^GOVULNCHECK_VERSION=(\S+)$", deps, re.M)[1]
    db = re.search(r"^VULNDB_VERSION=(\S+)$", deps, re.M)[1]
    return ROOT / ".tools" / f"govulncheck-{tool}", ROOT / ".tools" / f"vulndb-{db}"


def decode_stream(text):
    """govulncheck -format json writes a stream of JSON objects."""
    dec, i, out = json.JSONDecoder(), 0, []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return out
        obj, i = dec.raw_decode(text, i)
        out.append(obj)


@dataclass
class Finding:
    id: str
    summary: str
    found: str  # module@version
    fixed: str
    example: str  # the first frame that calls into the vulnerable code


@dataclass
class Scan:
    config: dict = field(default_factory=dict)
    reachable: dict = field(default_factory=dict)  # id -> Finding
    imported_only: set = field(default_factory=set)


def parse(objs):
    scan = Scan()
    summaries = {}
    for o in objs:
        if "config" in o:
            scan.config = o["config"]
        elif "osv" in o:
            summaries[o["osv"]["id"]] = o["osv"].get("summary", "")
        elif "finding" in o:
            f = o["finding"]
            trace = f.get("trace") or [{}]
            if not trace[0].get("function"):
                scan.imported_only.add(f["osv"])
                continue
            if f["osv"] in scan.reachable:
                continue
            top = trace[0]
            frame = trace[-1]
            where = frame.get("position", {})
            example = f"{frame.get('package', '')}.{frame.get('function', '')}"
            if where.get("filename"):
                example += f" ({where['filename']}:{where.get('line', '?')})"
            module = "stdlib" if top.get("module") == "stdlib" else top.get("module", "?")
            scan.reachable[f["osv"]] = Finding(
                id=f["osv"], summary="", found=f"{module}@{top.get('version', '?')}",
                fixed=f.get("fixed_version", "none"), example=example,
            )
    for fid, finding in scan.reachable.items():
        finding.summary = summaries.get(fid, "")
    scan.imported_only -= set(scan.reachable)
    return scan


def read_waivers(path):
    """id -> reason. Lines: an ID, then the reason; # starts a comment."""
    waivers = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fid, _, reason = line.partition(" ")
        if not re.fullmatch(r"GO-\d{4}-\d+", fid) or not reason.strip():
            raise SystemExit(f"{path}:{n}: want '<GO-YYYY-NNNN> <reason>', got {line!r}")
        if fid in waivers:
            raise SystemExit(f"{path}:{n}: {fid} is waived twice")
        waivers[fid] = reason.strip()
    return waivers


def judge(scans, waivers):
    """(unwaived reachable ids, waivers that match nothing)."""
    reachable = set().union(*(s.reachable for s in scans.values()))
    return sorted(reachable - set(waivers)), sorted(set(waivers) - reachable)


def run(tool, db, folder, flags):
    cmd = [str(tool), "-db", db.as_uri(), "-format", "json", *flags, "./..."]
    p = subprocess.run(cmd, cwd=ROOT / folder, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"govulncheck in {folder} failed ({p.returncode}):\n{p.stderr}")
    return parse(decode_stream(p.stdout))


def main() -> int:
    tool, db = pinned()
    if not tool.exists() or not (db / "index" / "db.json").exists():
        raise SystemExit(f"govulncheck: {tool} or {db} missing: run make deps (bash scripts/deps.sh vuln)")
    waivers = read_waivers(WAIVERS)
    # Two scans at a time: much of a scan is single-threaded.
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {folder: pool.submit(run, tool, db, folder, flags) for folder, flags in MODULES}
        scans = {folder: f.result() for folder, f in futures.items()}
    for folder, scan in scans.items():
        c = scan.config
        print(f"govulncheck {c.get('scanner_version')} ({c.get('go_version')}, database of "
              f"{c.get('db_last_modified')}): {folder}: {len(scan.reachable)} reachable, "
              f"{len(scan.imported_only)} in code imported but not called")
        for f in sorted(scan.reachable.values(), key=lambda f: f.id):
            mark = "waived" if f.id in waivers else "NOT WAIVED"
            print(f"  {f.id} [{mark}] {f.found} (fixed in {f.fixed}): {f.summary}\n      e.g. {f.example}")
    unwaived, stale = judge(scans, waivers)
    status = 0
    if unwaived:
        print(f"govulncheck: reachable and not waived: {' '.join(unwaived)} (upgrade the module, or waive with a reason "
              f"in {WAIVERS.relative_to(ROOT)}; docs/vulnerabilities.md)", file=sys.stderr)
        status = 1
    if stale:
        print(f"govulncheck: waivers that match no reachable finding any more (delete them): {' '.join(stale)}",
              file=sys.stderr)
        status = 1
    if status == 0:
        print(f"govulncheck: ok ({len(waivers)} waived, see docs/vulnerabilities.md)")
    return status


if __name__ == "__main__":
    sys.exit(main())
