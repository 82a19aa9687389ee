"""The documentation site builds with `mkdocs build --strict` (what `make
docs` runs): every link between pages, every anchor, every page in the nav
and every link to a repository file (scripts/mkdocs_hooks.py) resolves. And
the check can fail: a copy of the docs with one broken link or anchor must
not build."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MKDOCS = ROOT / ".venv" / "bin" / "mkdocs"

sys.path.insert(0, str(ROOT / "scripts"))
import mkdocs_hooks  # noqa: E402


def build(config, site_dir, cwd=ROOT):
    if not MKDOCS.exists():
        pytest.fail(f"{MKDOCS} is missing: run `make deps`", pytrace=False)
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    return subprocess.run([str(MKDOCS), "build", "--strict", "--config-file", str(config), "--site-dir", str(site_dir)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_site_builds_strictly(tmp_path):
    out = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert out.returncode == 0, f"mkdocs build --strict failed:\n{out.stderr[-6000:]}"
    site = tmp_path / "site"
    for page in ("index.html", "getting-started.html", "architecture.html", "sdk/curl.html", "operations/index.html",
                 "search/search_index.json"):
        assert (site / page).is_file(), f"{page} is missing from the built site"
    arch = (site / "architecture.html").read_text()
    assert arch.count('class="mermaid"') >= 2, "architecture.md's Mermaid diagrams are not rendered as diagrams"
    # Mermaid from make deps's copy, so that diagrams render offline; without
    # it mkdocs-material loads Mermaid from a CDN (allowed only outside CI).
    if (ROOT / mkdocs_hooks.MERMAID_SRC).is_file() or os.environ.get("CI") == "true":
        assert (site / mkdocs_hooks.MERMAID_DEST).is_file(), \
            f"{mkdocs_hooks.MERMAID_SRC} is missing or not served: run `make deps`"
        assert f'src="{mkdocs_hooks.MERMAID_DEST}"' in arch
    # A link to a repository file outside docs/ points at the repository.
    gw = (site / "gateway-config.html").read_text()
    assert "https://github.com/helixflow/helixflow/blob/main/deploy/local/gateway.yaml" in gw


@pytest.fixture(scope="module")
def docs_repo(tmp_path_factory):
    """A repository whose docs/ and mkdocs.yml are copies (to break) and
    whose other top-level entries link to the real ones (the hook checks
    repository links against them). The copy must build as it is."""
    repo = tmp_path_factory.mktemp("docs-copy") / "repo"
    repo.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in ("docs", "mkdocs.yml", "site", ".git"):
            (repo / entry.name).symlink_to(entry)
    subprocess.run(["cp", "-r", str(ROOT / "docs"), str(repo / "docs")], check=True)
    (repo / "mkdocs.yml").write_text((ROOT / "mkdocs.yml").read_text())
    ok = build(repo / "mkdocs.yml", repo.parent / "ok", cwd=repo)
    assert ok.returncode == 0, f"the unbroken copy must build:\n{ok.stderr[-4000:]}"
    return repo


@pytest.fixture
def docs_copy(docs_repo):
    """docs_repo, with docs/faq.md and any new page put back after the test."""
    faq = docs_repo / "docs" / "faq.md"
    text = faq.read_text()
    yield docs_repo
    faq.write_text(text)
    (docs_repo / "docs" / "orphan.md").unlink(missing_ok=True)


def append(repo, page, text):
    p = repo / "docs" / page
    p.write_text(p.read_text() + "\n\n" + text + "\n")


@pytest.mark.parametrize("text, says", [
    ("See [nowhere](no-such-page.md).", "no-such-page.md"),
    ("See [the processes](architecture.md#no-such-section).", "no-such-section"),
    ("See [here](#no-such-anchor-on-this-page).", "no-such-anchor-on-this-page"),
    ("See [the spec](../api/no-such-file.yaml).", "api/no-such-file.yaml does not exist"),
    ("See [the README](../README.md#no-such-heading).", "has no heading with anchor #no-such-heading"),
], ids=["page", "anchor", "own-anchor", "repo-file", "repo-anchor"])
def test_broken_link_fails_the_build(docs_copy, tmp_path, text, says):
    append(docs_copy, "faq.md", text)
    out = build(docs_copy / "mkdocs.yml", tmp_path / "broken", cwd=docs_copy)
    assert out.returncode != 0, f"a build with {text!r} passed"
    assert says in out.stderr, out.stderr[-4000:]


def test_page_missing_from_nav_fails_the_build(docs_copy, tmp_path):
    (docs_copy / "docs" / "orphan.md").write_text("# Orphan\n")
    out = build(docs_copy / "mkdocs.yml", tmp_path / "site", cwd=docs_copy)
    assert out.returncode != 0 and "orphan.md" in out.stderr, out.stderr[-4000:]


@pytest.mark.parametrize("heading, slug", [
    ("helix-xds", "helix-xds"),
    ("Rate limits", "rate-limits"),
    ("helix-worker TLS", "helix-worker-tls"),
    ("`authz.public`: helix-authz's public surface on the gateway", "authzpublic-helix-authzs-public-surface-on-the-gateway"),
    ("Python (`websockets`)", "python-websockets"),
])
def test_github_slug(heading, slug):
    assert mkdocs_hooks.github_slug(heading) == slug


def test_repo_links_rewrite(tmp_path):
    links = mkdocs_hooks.RepoLinks(ROOT, ROOT / "docs", "https://github.com/helixflow/helixflow", "guides/x.md")
    text = ("[spec](../../api/openapi.yaml) [`check`](../../extauthz/check/) [page](../index.md#top) "
            "`[code](../../nope)` [web](https://example.com/x)\n[x\ny](../../README.md#helix-xds)\n"
            "```\n[in a fence](../../nope)\n```\n[ref]: ../../Makefile\n")
    out = links.rewrite(text)
    assert not links.errors, links.errors
    base = "https://github.com/helixflow/helixflow"
    assert f"[spec]({base}/blob/main/api/openapi.yaml)" in out
    assert f"[`check`]({base}/tree/main/extauthz/check)" in out
    assert "[page](../index.md#top)" in out and "`[code](../../nope)`" in out and "[in a fence](../../nope)" in out
    assert f"[x\ny]({base}/blob/main/README.md#helix-xds)" in out
    assert f"[ref]: {base}/blob/main/Makefile" in out
    bad = mkdocs_hooks.RepoLinks(ROOT, ROOT / "docs", "https://github.com/helixflow/helixflow", "x.md")
    bad.rewrite("[a](../nope.txt) [b](../../../etc/passwd) [c](../.venv/bin/python)")
    assert bad.errors == ["../nope.txt: nope.txt does not exist in the repository",
                          "../../../etc/passwd: points outside the repository",
                          "../.venv/bin/python: .venv/bin/python is ignored by git: not in the repository"]
