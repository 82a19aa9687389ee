"""mkdocs hooks for the documentation site (mkdocs.yml `hooks:`).

Pages link to repository files outside docs/ the way the repository shows
them (`../api/openapi.yaml`, `../extauthz/check/`), which reads well on
GitHub and in an editor. mkdocs cannot serve those files, so before a page is
rendered (and before mkdocs validates its links) each such link is rewritten
to the file in the repository at repo_url (`blob/main/...`, `tree/main/...`
for a folder), and a target that does not exist in the checkout fails the
build: a renamed file breaks `make docs`, not a reader's click. An anchor on a
Markdown target (`../README.md#helix-xds`) is checked against that file's
headings as GitHub names them.

Also: the Reference section of the nav lists every page under
docs/reference/ (index.md first), so pages generated there join the nav
without editing mkdocs.yml; and when `make deps` has fetched Mermaid
(.deps/mermaid/mermaid.min.js), the site serves it itself instead of loading
it from a CDN, so its diagrams render offline.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import shutil
import subprocess
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

log = logging.getLogger("mkdocs.hooks.helixflow")

BRANCH = "main"
REFERENCE_SECTION = "Reference"
REFERENCE_DIR = "reference"
MERMAID_SRC = Path(".deps/mermaid/mermaid.min.js")
MERMAID_DEST = "assets/javascripts/mermaid.min.js"

# A fenced block's opening line: ``` or ~~~ (3 or more), any indentation.
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})")
# Inline links and images: [text](target "title"), with one level of nested
# brackets in the text. Reference definitions: [name]: target.
_INLINE = re.compile(r"(!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\()(\s*<?)([^)\s>]+)(>?(?:\s+\"[^\"]*\")?\s*\))")
_REFDEF = re.compile(r"^(\s{0,3}\[[^\]]+\]:\s*<?)([^\s>]+)(.*)$")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


@lru_cache(maxsize=4)
def repository_files(root: Path) -> frozenset[str] | None:
    """The files of the checkout at root that belong in the repository:
    tracked, or new and not ignored (`git ls-files`), so that a link to a
    build output (bin/, .venv/) fails although the file is here. None when
    root is not a git checkout: then existence is all that is checked."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                             capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return frozenset(f for f in out.decode("utf-8", "replace").split("\0") if f)


def _in_repository(root: Path, rel: str, is_dir: bool) -> bool:
    files = repository_files(root)
    if files is None:
        return True
    if is_dir:
        prefix = rel.rstrip("/") + "/"
        return any(f.startswith(prefix) for f in files)
    return rel in files


def _repo_root(config: Any) -> Path:
    return Path(config["config_file_path"]).resolve().parent


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation
    other than '-' and '_' removed, spaces to '-'."""
    s = re.sub(r"`|\*\*|__", "", heading.strip()).lower()
    s = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", s)
    s = "".join(c for c in s if c in " -_" or unicodedata.category(c)[0] in "LN")
    return s.replace(" ", "-")


def markdown_anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown file's ATX headings (duplicates get
    -1, -2, ... as GitHub numbers them), outside fenced blocks."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in _outside_fences(text.splitlines()):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = github_slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _outside_fences(lines: list[str]) -> list[str]:
    out, fence = [], None
    for line in lines:
        m = _FENCE.match(line)
        if fence is None and m:
            fence = m.group(2)[0] * len(m.group(2))
            out.append("")
        elif fence is not None:
            if line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
                fence = None
            out.append("")
        else:
            out.append(line)
    return out


class RepoLinks:
    """Rewrites one page's links to repository files outside docs_dir."""

    def __init__(self, root: Path, docs_dir: Path, repo_url: str, page_src: str):
        self.root, self.docs_dir, self.repo_url = root, docs_dir, repo_url.rstrip("/")
        self.page_dir = (docs_dir / page_src).parent
        self.page_src = page_src
        self.errors: list[str] = []

    def target(self, url: str) -> str:
        if url.startswith(("#", "/")) or _SCHEME.match(url):
            return url
        path, _, anchor = url.partition("#")
        if not path:
            return url
        resolved = Path(os.path.normpath(self.page_dir / path))
        try:
            resolved.relative_to(self.docs_dir)
            return url  # a page or file of the site: mkdocs validates it
        except ValueError:
            pass
        try:
            rel = resolved.relative_to(self.root)
        except ValueError:
            self.errors.append(f"{url}: points outside the repository")
            return url
        if not resolved.exists():
            self.errors.append(f"{url}: {rel.as_posix()} does not exist in the repository")
            return url
        if not _in_repository(self.root, rel.as_posix(), resolved.is_dir()):
            self.errors.append(f"{url}: {rel.as_posix()} is ignored by git: not in the repository")
            return url
        if anchor and resolved.suffix.lower() == ".md" and resolved.is_file():
            if anchor not in markdown_anchors(resolved.read_text(encoding="utf-8")):
                self.errors.append(f"{url}: {rel.as_posix()} has no heading with anchor #{anchor}")
        kind = "tree" if resolved.is_dir() else "blob"
        out = f"{self.repo_url}/{kind}/{BRANCH}/{posixpath.join(*rel.parts)}"
        return out + (f"#{anchor}" if anchor else "")

    def rewrite(self, markdown: str) -> str:
        """The page with its links rewritten; fenced blocks and code spans
        are left as they are. Text between fences is rewritten as a whole,
        so a link whose text wraps onto the next line is still found."""
        lines = markdown.split("\n")
        out: list[str] = []
        prose: list[str] = []
        fence = None
        for line in lines:
            m = _FENCE.match(line)
            if fence is None and not m:
                prose.append(line)
                continue
            if prose:
                out.append(self._rewrite_prose("\n".join(prose)))
                prose = []
            if fence is None and m:
                fence = m.group(2)[0] * len(m.group(2))
            elif fence is not None and line.strip().startswith(fence) and line.strip().strip(fence[0]) == "":
                fence = None
            out.append(line)
        if prose:
            out.append(self._rewrite_prose("\n".join(prose)))
        return "\n".join(out)

    def _rewrite_prose(self, text: str) -> str:
        text = "\n".join(self._rewrite_refdef(line) for line in text.split("\n"))
        spans = [c.span() for c in _CODE_SPAN.finditer(text)]

        def repl(m: re.Match[str]) -> str:
            # [a](b) inside backticks is text, but `code` inside a link's
            # text is not a reason to skip the link.
            if any(a <= m.start() < b for a, b in spans):
                return m.group(0)
            return m.group(1) + m.group(2) + self.target(m.group(3)) + m.group(4)

        return _INLINE.sub(repl, text)

    def _rewrite_refdef(self, line: str) -> str:
        d = _REFDEF.match(line)
        return d.group(1) + self.target(d.group(2)) + d.group(3) if d else line


def on_config(config: Any, **_: Any) -> Any:
    if not config.get("repo_url"):
        raise PluginError("mkdocs.yml: repo_url is required (links to repository files are rewritten to it)")
    _fill_reference_nav(config)
    src = _repo_root(config) / MERMAID_SRC
    if src.is_file():
        config["extra_javascript"].insert(0, MERMAID_DEST)
    else:
        log.info("Mermaid from its CDN (unpkg): %s is missing (make deps fetches it)", MERMAID_SRC)
    return config


def _fill_reference_nav(config: Any) -> None:
    docs_dir = Path(config["docs_dir"])
    ref = docs_dir / REFERENCE_DIR
    pages = sorted(p.relative_to(docs_dir).as_posix() for p in ref.rglob("*.md")) if ref.is_dir() else []
    index = f"{REFERENCE_DIR}/index.md"
    if index in pages:
        pages.remove(index)
        pages.insert(0, index)
    nav = config["nav"] or []
    for i, entry in enumerate(nav):
        if isinstance(entry, dict) and REFERENCE_SECTION in entry:
            listed = [e for e in entry[REFERENCE_SECTION] if not (isinstance(e, str) and e.startswith(REFERENCE_DIR + "/"))]
            if pages or listed:
                entry[REFERENCE_SECTION] = [_titled(docs_dir, p) for p in pages] + listed
            else:
                del nav[i]  # nothing generated yet: no empty section
            return


def _titled(docs_dir: Path, page: str) -> Any:
    """A nav entry with the page's first H1 as its title: mkdocs takes the
    title from the H1 only when it is the page's first element, and
    generated pages start with a comment saying so."""
    for line in _outside_fences((docs_dir / page).read_text(encoding="utf-8").splitlines()):
        m = re.match(r"^#\s+(.*?)\s*#*\s*$", line)
        if m:
            return {m.group(1): page}
    return page


def on_page_markdown(markdown: str, page: Any, config: Any, **_: Any) -> str:
    links = RepoLinks(_repo_root(config), Path(config["docs_dir"]).resolve(), config["repo_url"], page.file.src_uri)
    out = links.rewrite(markdown)
    if links.errors:
        raise PluginError(f"Doc file '{page.file.src_uri}': broken repository link(s):\n  " + "\n  ".join(links.errors))
    return out


def on_post_build(config: Any, **_: Any) -> None:
    src = _repo_root(config) / MERMAID_SRC
    if src.is_file():
        dest = Path(config["site_dir"]) / MERMAID_DEST
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
