"""Helpers of tests/accounts: a client of helix-authz's people's API whose
every answer is checked against api/openapi.yaml (openapi-core) and counted
against the spec's operations, the login form of /login, mailed links, and
timing statistics."""

import html.parser
import ipaddress
import pathlib
import random
import re
import statistics
import threading
import time
import urllib.parse
import uuid

import requests
import yaml
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "api" / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

# A password no list calls common, 8..64 characters.
PASSWORD = "violet-Harbor-93-lantern"


def load_spec():
    return yaml.safe_load(SPEC_PATH.read_text())


def spec_operations():
    """Every (path template, method) of the spec."""
    doc = load_spec()
    return sorted((p, m) for p, item in doc["paths"].items() for m in item if m in METHODS)


def _template_regex(template):
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")


# The origin the checker gives every request: the spec describes paths,
# and the servers under test listen on ports chosen at start.
CANONICAL_ORIGIN = "https://helix-authz.test"


class SpecChecker:
    """Validates answers against api/openapi.yaml and remembers which
    operations answered (any status: an operation counts as exercised when
    the server answered it)."""

    def __init__(self):
        doc = load_spec()
        doc["servers"] = [{"url": CANONICAL_ORIGIN}]
        self.api = OpenAPI.from_dict(doc)
        self.ops = [(_template_regex(p), p, m) for p, m in spec_operations()]
        self.exercised = set()
        self.failures = []
        self._lock = threading.Lock()

    def operation(self, method, path):
        for rx, template, m in self.ops:
            if m == method.lower() and rx.match(path):
                return template
        return None

    def hook(self, resp, *args, **kwargs):
        """A requests response hook: raises on an answer the spec does not
        describe, so the test that received it fails where it happened."""
        req = resp.request
        url = urllib.parse.urlsplit(req.url)
        path = url.path
        template = self.operation(req.method, path)
        if template is None:
            return resp
        with self._lock:
            self.exercised.add((template, req.method.lower()))
        try:
            canon = req.copy()
            canon.url = CANONICAL_ORIGIN + path + (f"?{url.query}" if url.query else "")
            self.api.validate_response(RequestsOpenAPIRequest(canon), RequestsOpenAPIResponse(resp))
        except Exception as e:  # openapi-core's errors carry the details in __cause__ / schema_errors
            detail = "; ".join(str(x) for x in getattr(e, "schema_errors", []) or []) or repr(e.__cause__ or e)
            msg = (f"{req.method} {path} answered {resp.status_code} outside api/openapi.yaml: {e}: {detail}\n"
                   f"body: {resp.text[:500]}")
            with self._lock:
                self.failures.append(msg)
            raise AssertionError(msg) from e
        return resp


def source_address():
    """A source address for X-Forwarded-For (helix-authz trusts loopback
    as a proxy in these tests): each client its own, so throttles keyed by
    source do not carry from one test to the next. From 198.18.0.0/15
    (RFC 2544, benchmarking)."""
    return str(ipaddress.ip_address(int(ipaddress.ip_address("198.18.0.0")) + random.randrange(1, 1 << 17)))


def new_email(tag="user"):
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.test"


def session(authz, spec, source=None, s=None):
    """A requests session (or s, e.g. authlib's OAuth2Session) for authz:
    its CA, every answer checked against the spec, its own source address.
    trust_env off: REQUESTS_CA_BUNDLE and proxies of the environment must
    not replace the test CA or reach loopback."""
    s = s or requests.Session()
    s.trust_env = False
    s.verify = str(authz.tls["ca"])
    s.hooks["response"].append(spec.hook)
    s.headers["X-Forwarded-For"] = source or source_address()
    return s


class Client:
    """A person's client of helix-authz: a requests session (cookies kept)
    checked against the spec, with the session's CSRF token sent on
    unsafe methods once logged in, or a bearer token."""

    def __init__(self, authz, spec, source=None, base=None):
        self.authz = authz
        self.base = base or authz.issuer
        self.source = source or source_address()
        self.s = session(authz, spec, self.source)
        self.csrf = None
        self.bearer = None
        self.user = None

    def call(self, method, path, json=None, csrf=True, patient=False, **kw):
        """One request; patient: a 429 is waited out (Retry-After, a few
        seconds at most) and the request sent again, as a well-behaved
        client does after a failure elsewhere in the test throttled it."""
        headers = dict(kw.pop("headers", {}) or {})
        if self.bearer:
            headers.setdefault("Authorization", f"Bearer {self.bearer}")
        elif csrf and self.csrf and method.upper() not in ("GET", "HEAD", "OPTIONS"):
            headers.setdefault("X-CSRF-Token", self.csrf)
        tries = 4 if patient else 1
        for i in range(tries):
            r = self.s.request(method, self.base + path, json=json, headers=headers, timeout=60, **kw)
            if r.status_code != 429 or i == tries - 1:
                return r
            time.sleep(min(float(r.headers.get("Retry-After", "1")), 5) + 0.05)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self.call("POST", path, json=json, **kw)

    def patch(self, path, json=None, **kw):
        return self.call("PATCH", path, json=json, **kw)

    def delete(self, path, json=None, **kw):
        return self.call("DELETE", path, json=json, **kw)

    def login_answer(self, email, password):
        """POST /api/v1/login, patiently."""
        return self.post("/api/v1/login", {"email": email, "password": password}, patient=True)

    def login(self, email, password=PASSWORD):
        r = self.login_answer(email, password)
        assert r.status_code == 200, r.text
        body = r.json()
        self.csrf, self.user = body["csrf_token"], body["user"]
        return body

    def session_cookie(self):
        return self.s.cookies.get("__Host-helix_session")


def error_of(resp):
    """The error code of a webapi error answer."""
    return resp.json().get("error")


def mail_link(mail, path):
    """The link to `path` (e.g. "/verify-email") in a mail's text."""
    m = re.search(r"https?://[^\s<>\"]+" + re.escape(path) + r"\?token=[A-Za-z0-9_\-%.~]+", mail.get("Text", ""))
    assert m, f"no {path} link in mail {mail.get('Subject')!r}: {mail.get('Text', '')[:400]}"
    return m.group(0)


def refused_login(authz, spec, email, password):
    """A login that must fail: its answer (401 expected), a throttle's 429
    waited out."""
    return Client(authz, spec).login_answer(email, password)


def link_token(link):
    return urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["token"][0]


def has_link(path):
    return lambda m: f"{path}?token=" in m.get("Text", "")


def signup(client, mailpit, email=None, password=PASSWORD, skip=()):
    """Signs up email; returns (email, the verification link's token) from
    a mail that arrived after the request."""
    email = email or new_email()
    skip = set(skip) | {m["ID"] for m in mailpit.messages(email)}
    r = client.post("/api/v1/signup", {"email": email, "password": password, "display_name": "Ada Test"})
    assert r.status_code == 202, r.text
    mail = mailpit.wait(email, has_link("/verify-email"), skip=skip)
    return email, link_token(mail_link(mail, "/verify-email"))


def verified_user(authz, spec, mailpit, password=PASSWORD, tag="user"):
    """A new verified account; returns its email."""
    c = Client(authz, spec)
    email, token = signup(c, mailpit, new_email(tag), password)
    r = c.post("/api/v1/verify-email", {"token": token})
    assert r.status_code == 200, r.text
    assert r.json()["email_verified"] is True
    return email


def logged_in(authz, spec, mailpit, tag="user"):
    """A client logged in as a new verified user."""
    email = verified_user(authz, spec, mailpit, tag=tag)
    c = Client(authz, spec)
    c.login(email)
    c.email = email
    return c


class _Forms(html.parser.HTMLParser):
    """The forms of an HTML page: action, method and their inputs."""

    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action") or "", "method": (a.get("method") or "get").lower(),
                               "inputs": []})
        elif tag in ("input", "button") and self.forms:
            self.forms[-1]["inputs"].append(a)


def forms(page):
    p = _Forms()
    p.feed(page)
    return p.forms


def submit_login_form(session, page_url, page, email, password, **kw):
    """Fills the login form of page (its hidden fields, the CSRF token
    among them, kept as served) and posts it; returns the answer (not
    followed)."""
    posts = [f for f in forms(page) if f["method"] == "post"]
    assert posts, f"no POST form on {page_url}: {page[:400]}"
    form = posts[0]
    data = {}
    for i in form["inputs"]:
        name, typ = i.get("name"), (i.get("type") or "text").lower()
        if not name:
            continue
        if typ == "password":
            data[name] = password
        elif typ == "email" or name in ("email", "username"):
            data[name] = email
        elif typ in ("hidden", "text"):
            data[name] = i.get("value") or ""
    action = urllib.parse.urljoin(page_url, form["action"] or page_url)
    return session.post(action, data=data, allow_redirects=False, **kw)


def medians(fn_a, fn_b, tries):
    """Runs fn_a and fn_b in turn `tries` times each (interleaved, so load
    from elsewhere falls on both alike) and returns their median times in
    seconds."""
    ta, tb = [], []
    for i in range(tries):
        pair = [(fn_a, ta), (fn_b, tb)]
        if i % 2:
            pair.reverse()
        for fn, out in pair:
            t = time.perf_counter()
            fn(i)
            out.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)
