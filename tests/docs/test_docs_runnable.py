"""Every code block of docs/ marked `<!-- runnable -->` runs against the
stack and exits 0 (the convention: docs_util's docstring), so the examples
never rot. One test per block, id `page:line`, in page order; a failing
block's test shows its code and output.

    HELIX_STACK_INFO=/tmp/st/info.json .venv/bin/pytest -q tests/docs/test_docs_runnable.py
"""

import pathlib
import shutil
import tempfile

import pytest

import docs_util
from docs_util import Block, extract

BLOCKS = docs_util.all_blocks()
_workdirs: dict[str, pathlib.Path] = {}


@pytest.fixture(scope="module")
def page_dirs():
    """One temporary folder per page, shared by its blocks, removed at the end."""
    yield _workdirs
    for d in _workdirs.values():
        shutil.rmtree(d, ignore_errors=True)
    _workdirs.clear()
    _ran.clear()


_ran: set[str] = set()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_runnable_block(block, helix_stack, page_dirs):
    if block.page not in page_dirs:
        page_dirs[block.page] = pathlib.Path(tempfile.mkdtemp(prefix="helix-docs-" + block.page.replace("/", "-") + "-"))
    env = docs_util.block_env(helix_stack.env)
    # A block may need what the page's earlier blocks left (`-k page:line`
    # selects one): run those that have not run first.
    for before in BLOCKS:
        if before.page == block.page and before.line < block.line and before.id not in _ran:
            _ran.add(before.id)
            r = docs_util.run_block(before, page_dirs[block.page], env)
            if r.returncode != 0:
                pytest.fail("an earlier block of the page failed:\n" + docs_util.describe(before, r), pytrace=False)
    _ran.add(block.id)
    result = docs_util.run_block(block, page_dirs[block.page], env)
    if result.returncode != 0:
        pytest.fail(docs_util.describe(block, result), pytrace=False)


def test_docs_have_runnable_blocks():
    """The pages that promise runnable examples keep some (a marker lost in
    an edit would silently stop their checks)."""
    pages = {b.page for b in BLOCKS}
    for page in ("getting-started.md", "guides/authentication.md", "sdk/curl.md"):
        assert page in pages, f"docs/{page} has no `<!-- runnable -->` block"
    unknown = [f"{b.id} ({b.info!r})" for b in BLOCKS if not b.lang]
    assert not unknown, f"runnable blocks in a language the runner does not know: {unknown}"


# The extraction itself.

PAGE = """# Title

<!-- runnable -->
```sh
echo one
```

```sh
echo not marked
```

<!-- runnable -->

```python
print("a blank line between marker and fence: not runnable")
```

<!-- runnable -->
~~~~ python title="x.py"
print("```")
~~~~

1. A list item:

    <!-- runnable -->
    ```go
    package main

    func main() {}
    ```

<!-- runnable -->
```js
console.log(1)
```

<!-- runnable -->
```ruby
puts 1
```
"""


def test_extract():
    blocks = extract(PAGE, "p.md")
    assert [(b.id, b.lang) for b in blocks] == [
        ("p.md:4", "sh"), ("p.md:19", "python"), ("p.md:26", "go"), ("p.md:33", "js"), ("p.md:38", "")]
    assert blocks[0].code == "echo one\n"
    assert blocks[1].code == 'print("```")\n'
    assert blocks[1].info == 'python title="x.py"'
    assert blocks[2].code == "package main\n\nfunc main() {}\n", "the list's indentation is removed"


def test_extract_unclosed_block_runs_to_the_end():
    blocks = extract("<!-- runnable -->\n```sh\necho a\necho b", "p.md")
    assert [b.code for b in blocks] == ["echo a\necho b\n"]


def test_run_block_reports_failure_and_output(tmp_path):
    env = docs_util.block_env({"HELIX_CA_FILE": "/nonexistent"})
    ok = docs_util.run_block(Block("p.md", 1, "sh", "sh", "echo hi > f\n"), tmp_path, env)
    assert ok.returncode == 0
    again = docs_util.run_block(Block("p.md", 5, "sh", "sh", "cat f\nfalse\necho never\n"), tmp_path, env)
    assert again.returncode == 1 and again.output == "hi\n", "blocks of a page share a folder; -e stops at false"
    slow = docs_util.run_block(Block("p.md", 9, "python", "python", "import time\nprint('x', flush=True)\ntime.sleep(30)\n"),
                               tmp_path, env, timeout=2)
    assert slow.returncode is None and slow.output.startswith("x\n")
    text = docs_util.describe(Block("p.md", 9, "python", "python", "import time\n"), slow)
    assert "docs/p.md:9 (python) timed out" in text and "   10 | import time" in text
    bad = docs_util.run_block(Block("p.md", 12, "", "ruby", "puts 1\n"), tmp_path, env)
    assert bad.returncode == 2 and "not one of sh, python, go, js" in bad.output


def test_block_env_is_the_stacks():
    env = docs_util.block_env({"HELIX_GRPC_ADDR": "127.0.0.1:1"})
    assert env["HELIX_GRPC_ADDR"] == "127.0.0.1:1"
    assert env["PATH"].split(":")[:2] == [str(docs_util.ROOT / "bin"), str(docs_util.ROOT / ".venv" / "bin")]
    assert not [k for k in env if k.startswith("HELIX_") and k != "HELIX_GRPC_ADDR"]
