"""Runnable documentation blocks (issue 19's convention, docs/index.md says it
for writers too): a fenced code block immediately preceded by the line
`<!-- runnable -->` is run against the stack, in page order, each block in a
fresh process, 120 s at most, and must exit 0.

- `sh`: bash -euo pipefail; `python`: .venv's python (the SDK installed);
  `go`: a whole `package main` program, run with `go run` in a module of its
  own that requires github.com/helixflow/helixflow/sdk/go, replaced by the
  repository's sdk/go; `js`: an ES module run by node with
  NODE_EXTRA_CA_CERTS=$HELIX_CA_FILE (sdk/js's node_modules, when installed,
  are visible as ./node_modules).
- Environment: the caller's, without any HELIX_* variable of its own, plus
  the stack's local.env (what `source .helix/local.env` gives a `make run`
  user) and PATH with the repository's bin/ and .venv/bin first.
- Working directory: a temporary folder shared by the blocks of one page, so
  a block can leave a file for the next one.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shutil
import signal
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
MARKER = "<!-- runnable -->"
TIMEOUT = 120
GO_SDK_MODULE = "github.com/helixflow/helixflow/sdk/go"

# A fence's info string's first word -> the language run.
LANGUAGES = {"sh": "sh", "bash": "sh", "shell": "sh", "python": "python", "py": "python",
             "go": "go", "js": "js", "javascript": "js", "mjs": "js"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")


@dataclasses.dataclass(frozen=True)
class Block:
    page: str  # relative to docs/, POSIX
    line: int  # the opening fence's line, 1-based
    lang: str  # one of LANGUAGES' values; "" when the info string names none of them
    info: str  # the fence's info string as written
    code: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def extract(text: str, page: str) -> list[Block]:
    """The runnable blocks of one page's Markdown, in order. The marker must
    be the line right before the opening fence (indentation aside); the
    block's indentation (in a list or an admonition) is removed. An
    unclosed runnable block runs to the end of the page, as Markdown shows
    it."""
    lines = text.split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m.group("fence"), len(m.group("indent").expandtabs(4))
        runnable = i > 0 and lines[i - 1].strip() == MARKER
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines):
            close = lines[i].strip()
            if close.startswith(fence[0] * len(fence)) and close.strip(fence[0]) == "":
                break
            body.append(lines[i])
            i += 1
        i += 1
        if runnable:
            info = m.group("info").strip()
            first = info.split()[0].lstrip(".{").rstrip("}") if info else ""
            code = "\n".join(_dedent(b, indent) for b in body) + "\n"
            blocks.append(Block(page, start + 1, LANGUAGES.get(first.lower(), ""), info, code))
    return blocks


def _dedent(line: str, n: int) -> str:
    expanded = line.expandtabs(4)
    k = len(expanded) - len(expanded.lstrip(" "))
    return expanded[min(k, n):]


def all_blocks(docs: pathlib.Path = DOCS) -> list[Block]:
    """Every runnable block under docs/, pages in path order."""
    out: list[Block] = []
    for p in sorted(docs.rglob("*.md")):
        out.extend(extract(p.read_text(encoding="utf-8"), p.relative_to(docs).as_posix()))
    return out


def block_env(stack_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELIX_")}
    env.update(stack_env)
    env["PATH"] = os.pathsep.join([str(ROOT / "bin"), str(ROOT / ".venv" / "bin"), os.environ.get("PATH", "")])
    env["NODE_EXTRA_CA_CERTS"] = stack_env.get("HELIX_CA_FILE", "")
    env.pop("VIRTUAL_ENV", None)
    return env


@dataclasses.dataclass
class Result:
    argv: list[str]
    returncode: int | None  # None: killed at the timeout
    output: str


def run_block(block: Block, workdir: pathlib.Path, env: dict[str, str], timeout: float = TIMEOUT) -> Result:
    """Runs one block in workdir (shared by its page's blocks). Setting up a
    go module counts against the same timeout."""
    name = f"block-{block.line}"
    if block.lang == "sh":
        f = workdir / f"{name}.sh"
        f.write_text(block.code)
        return _run(["bash", "-euo", "pipefail", str(f)], workdir, env, timeout)
    if block.lang == "python":
        f = workdir / f"{name}.py"
        f.write_text(block.code)
        return _run([str(ROOT / ".venv" / "bin" / "python"), str(f)], workdir, env, timeout)
    if block.lang == "js":
        modules = ROOT / "sdk" / "js" / "node_modules"
        link = workdir / "node_modules"
        if modules.is_dir() and not link.exists():
            link.symlink_to(modules)
        f = workdir / f"{name}.mjs"
        f.write_text(block.code)
        return _run(["node", str(f)], workdir, env, timeout)
    if block.lang == "go":
        return _run_go(block, workdir / name, env, timeout)
    return Result([], 2, f"{block.id}: runnable block in language {block.info!r}: not one of sh, python, go, js")


def _run_go(block: Block, moddir: pathlib.Path, env: dict[str, str], timeout: float) -> Result:
    moddir.mkdir()
    sdk = ROOT / "sdk" / "go"
    gomod = f"module docsblock\n\ngo {_go_version(sdk)}\n"
    if (sdk / "go.mod").is_file():
        gomod += f"\nrequire {GO_SDK_MODULE} v0.0.0\n\nreplace {GO_SDK_MODULE} => {sdk}\n"
        if (sdk / "go.sum").is_file():
            shutil.copyfile(sdk / "go.sum", moddir / "go.sum")
    (moddir / "go.mod").write_text(gomod)
    (moddir / "main.go").write_text(block.code)
    # tidy keeps only what main.go imports (a block without the SDK, too)
    # and fills go.sum from the module cache.
    script = "go mod tidy && exec go run ."
    return _run(["bash", "-euo", "pipefail", "-c", script], moddir, env, timeout)


def _go_version(sdk: pathlib.Path) -> str:
    for src in (sdk / "go.mod", ROOT / "go.mod"):
        if src.is_file():
            m = re.search(r"^go (\S+)", src.read_text(), re.M)
            if m:
                return m.group(1)
    return "1.22"


def _run(argv: list[str], cwd: pathlib.Path, env: dict[str, str], timeout: float) -> Result:
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return Result(argv, proc.returncode, out.decode(errors="replace"))
    except subprocess.TimeoutExpired:
        # The block's whole process group: a server it started must not outlive it.
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return Result(argv, None, out.decode(errors="replace") + f"\n[killed after {timeout:g} s]")


def describe(block: Block, result: Result, limit: int = 6000) -> str:
    """What a failing block's test prints: where, how it ended, its code and
    the end of its output."""
    how = "timed out" if result.returncode is None else f"exited {result.returncode}"
    out = result.output if len(result.output) <= limit else "…" + result.output[-limit:]
    numbered = "\n".join(f"{block.line + 1 + n:5} | {line}" for n, line in enumerate(block.code.rstrip("\n").split("\n")))
    return (f"runnable block docs/{block.id} ({block.info}) {how}\n--- code ---\n{numbered}\n"
            f"--- output ---\n{out}")
