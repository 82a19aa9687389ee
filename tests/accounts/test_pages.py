"""The HTML pages a person reaches from a mail or an OAuth app (/login,
/verify-email, /reset-password): the browser protections they carry, and
fuzzed or oversized forms, which are refused without a server error and
without signing anyone in."""

import random
import re

import pytest

from people import PASSWORD, forms, session, verified_user

PAGES = ["/login", "/verify-email?token=" + "A" * 43, "/reset-password?token=" + "A" * 43]


@pytest.mark.parametrize("page", PAGES)
def test_pages_carry_the_browser_protections(authz, spec, page):
    r = session(authz, spec).get(authz.issuer + page)
    assert r.status_code == 200, r.status_code
    h = r.headers
    csp = h["Content-Security-Policy"]
    for directive in ("default-src 'none'", "frame-ancestors 'none'", "form-action 'self'", "base-uri 'none'"):
        assert directive in csp, (directive, csp)
    assert "unsafe-inline" not in csp
    assert h["X-Frame-Options"] == "DENY"
    assert h["Referrer-Policy"] == "same-origin"
    assert h.get("Cache-Control") == "no-store"
    assert not re.search(r"<script|\sstyle=|\son[a-z]+=", r.text, re.I), "no inline script or style"
    posts = [f for f in forms(r.text) if f["method"] == "post"]
    assert posts and any(i.get("name") == "csrf_token" for i in posts[0]["inputs"]), "every form carries a CSRF token"
    # The token of a mailed link is not sent on to other sites.
    assert "A" * 43 not in str(r.headers.get("Location", ""))


def fields(rng):
    junk = [b"", b"'", b"%00", b"%ZZ", b"a" * 300, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))]
    names = [b"email", b"password", b"token", b"new_password", b"return_to", b"csrf_token", b"zz"]
    parts = []
    for _ in range(rng.randrange(1, 6)):
        parts.append(rng.choice(names) + b"=" + rng.choice(junk))
    return b"&".join(parts)


@pytest.mark.parametrize("page", PAGES)
def test_fuzzed_and_oversized_forms(authz, spec, mailpit, page):
    email = verified_user(authz, spec, mailpit, tag="formfuzz")
    b = session(authz, spec)
    url = authz.issuer + page
    form = [f for f in forms(b.get(url).text) if f["method"] == "post"][0]
    csrf = next(i.get("value") for i in form["inputs"] if i.get("name") == "csrf_token")
    rng = random.Random(page)
    bodies = [fields(rng) for _ in range(30)]
    bodies += [bytes(rng.randrange(256) for _ in range(200)), b"csrf_token=" + csrf.encode() + b"&email=" + b"a" * (70 << 10),
               b"csrf_token=" + csrf.encode() + b"&email=a&email=b&password=c"]
    for body in bodies:
        # With the page's CSRF token (the fields are read), and without.
        for with_csrf in (True, False):
            data = body + (b"&csrf_token=" + csrf.encode() if with_csrf and b"csrf_token=" not in body else b"")
            r = b.post(url, data=data, allow_redirects=False,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert 400 <= r.status_code < 500, (page, data[:80], r.status_code)
            assert "__Host-helix_session" not in r.headers.get("Set-Cookie", ""), "nobody is signed in"
    # The right form still works afterwards.
    if page == "/login":
        r = b.post(url, data={"csrf_token": csrf, "email": email, "password": PASSWORD}, allow_redirects=False)
        assert r.status_code in (200, 303) and "__Host-helix_session" in r.headers.get("Set-Cookie", ""), r.status_code
