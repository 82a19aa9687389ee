"""Helpers of test_openapi_authz.py and test_openapi_admin.py: run
schemathesis (its Python API) on every operation of an OpenAPI file against
the shared stack, positive and negative cases, with the response checks the
issue asks for, and remember which operations the server answered.

Each operation gets a fixed number of examples per generation mode
(derandomized, no shrinking), so a file's run time is bounded and the same
from run to run."""

import base64
import hashlib
import random
import time
import urllib.parse
import urllib.request
import uuid

import helixstack
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.checks import not_a_server_error

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
# A password no list calls common, 8..64 characters.
PASSWORD = "violet-Harbor-93-lantern"


def load(path):
    """The schema at path, generating no security parameters (the tests
    authenticate each case themselves)."""
    schema = schemathesis.openapi.from_path(path)
    schema.config.generation.update(with_security_parameters=False)
    return schema


def operations(schema):
    """{label: APIOperation} of every operation of schema, e.g.
    "POST /oauth2/token"."""
    return {op.label: op for op in (r.ok() for r in schema.get_all_operations())}


class Fuzzer:
    """Runs an operation's cases: prepare(case, mode) authenticates and
    points the case at real objects, send(case) calls it; the answer is
    validated with CHECKS. `answered` holds the labels the server answered
    at least once."""

    def __init__(self, base_url, verify):
        self.base_url = base_url
        self.verify = verify
        self.answered = set()
        self.calls = 0
        # label -> {status: count}, for a look at what the cases reached.
        self.statuses = {}

    def run(self, op, prepare, examples, modes=MODES, kwargs=None, after=None):
        for mode in modes:
            try:
                strategy = op.as_strategy(generation_mode=mode)
            except Unsatisfiable:
                continue

            @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def one(case):
                extra = prepare(case, mode) or {}
                extra = {**(kwargs or {}), **extra}
                resp = case.call(base_url=self.base_url, verify=self.verify, timeout=30, **extra)
                self.calls += 1
                self.answered.add(op.label)
                counts = self.statuses.setdefault(op.label, {})
                counts[resp.status_code] = counts.get(resp.status_code, 0) + 1
                if after is not None:
                    after(case, resp)
                case.validate_response(resp, checks=CHECKS, headers=extra.get("headers"))

            try:
                one()
            except Unsatisfiable:
                # Nothing in this operation can be made invalid (no
                # parameters, no body): the positive cases cover it.
                continue

    def coverage(self, op, prepare, limit, kwargs=None, after=None):
        """schemathesis' coverage phase for op: deterministic cases at the
        schema's edges (each field missing, of the wrong type, at and past
        its bounds; unexpected methods), at most limit of them, evenly
        spread over the list so that every field keeps some."""
        schema = op.schema
        cfg = schema.config.generation_for(operation=op, phase="coverage")
        cases = list(schema.iter_coverage_cases(op, generation_modes=list(MODES), generation_config=cfg))
        if len(cases) > limit:
            step = len(cases) / limit
            cases = [cases[int(i * step)] for i in range(limit)]
        for case in cases:
            extra = {**(kwargs or {}), **(prepare(case, case.meta.generation.mode) or {})}
            resp = case.call(base_url=self.base_url, verify=self.verify, timeout=30, **extra)
            self.calls += 1
            self.answered.add(op.label)
            counts = self.statuses.setdefault(op.label, {})
            counts[resp.status_code] = counts.get(resp.status_code, 0) + 1
            if after is not None:
                after(case, resp)
            case.validate_response(resp, checks=CHECKS, headers=extra.get("headers"))


def source_address():
    """An X-Forwarded-For source from 198.18.0.0/15 (RFC 2544; helix-authz
    trusts loopback as a proxy in the stack), so that per-source throttles
    of one case or test do not carry to the next."""
    return f"198.{18 + random.randrange(2)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def new_email(tag):
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.test"


class PublicAPI:
    """A person's side of helix-authz's public port, for set-up (not
    fuzzed): sign-up, the mailed verification link, login."""

    def __init__(self, base, ca_file, mailpit):
        self.base = base
        self.mailpit = mailpit
        self.s = requests.Session()
        self.s.trust_env = False
        self.s.verify = ca_file

    def call(self, method, path, body=None, cookie=None, csrf=None, bearer=None, **kw):
        headers = {"X-Forwarded-For": source_address()}
        if cookie:
            headers["Cookie"] = f"__Host-helix_session={cookie}"
        if csrf:
            headers["X-CSRF-Token"] = csrf
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        for _ in range(6):
            r = self.s.request(method, self.base + path, json=body, headers=headers, timeout=30,
                               allow_redirects=False, **kw)
            # No cookie carries to the next call: a login that sent one
            # would end that session (fixation defence).
            self.s.cookies.clear()
            if r.status_code not in (429, 503):
                return r
            time.sleep(min(float(r.headers.get("Retry-After", "1")), 5) + 0.1)
        return r

    def mail_token(self, email, path, deadline=30):
        """The token of the newest mailed link to path for email."""
        return helixstack.mail_token(self.mailpit, email, path, deadline)

    def person(self, tag):
        """A new verified, logged-in person: {email, password, id, cookie,
        csrf}."""
        email = new_email(tag)
        r = self.call("POST", "/api/v1/signup", {"email": email, "password": PASSWORD, "display_name": tag})
        assert r.status_code == 202, r.text
        token = self.mail_token(email, "/verify-email")
        r = self.call("POST", "/api/v1/verify-email", {"token": token})
        assert r.status_code == 200, r.text
        r = self.call("POST", "/api/v1/login", {"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        body = r.json()
        return {"email": email, "password": PASSWORD, "id": body["user"]["id"],
                "cookie": r.cookies.get("__Host-helix_session"), "csrf": body["csrf_token"]}


HELIXCTL = "helixctl"  # the first-party public client (internal/wire)
HELIXCTL_REDIRECT = "http://127.0.0.1:45123/callback"


def pkce():
    """A PKCE verifier and its S256 challenge (RFC 7636)."""
    verifier = base64.urlsafe_b64encode(random.randbytes(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class PersonToken:
    """A person's access token (scope account by default), refreshed with its
    rotating refresh token before it expires (tokens live 20 s in the
    stack)."""

    def __init__(self, pub, person, scope="account"):
        self.pub = pub
        self.access, self.refresh = person_token(pub, person, scope)
        self.at = time.monotonic()

    def get(self):
        if time.monotonic() - self.at > 10:
            r = self.pub.s.post(self.pub.base + "/oauth2/token", timeout=30, data={
                "grant_type": "refresh_token", "refresh_token": self.refresh, "client_id": HELIXCTL})
            assert r.status_code == 200, r.text
            body = r.json()
            self.access, self.refresh, self.at = body["access_token"], body["refresh_token"], time.monotonic()
        return self.access


def authorize_query(challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"):
    """A well-formed authorization request of helixctl."""
    return {"response_type": "code", "client_id": HELIXCTL, "redirect_uri": HELIXCTL_REDIRECT, "scope": "account",
            "state": "openapi-state-1234", "code_challenge": challenge, "code_challenge_method": "S256"}


def person_token(pub, person, scope="account"):
    """A person's access token with scope, by helixctl's flow: the
    authorization code with PKCE at /oauth2/authorize (the person's
    session), then the token endpoint."""
    verifier, challenge = pkce()
    r = pub.call("GET", "/oauth2/authorize", cookie=person["cookie"], params={**authorize_query(challenge), "scope": scope})
    assert r.status_code in (302, 303), r.text
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(r.headers["Location"]).query)["code"][0]
    r = pub.s.post(pub.base + "/oauth2/token", timeout=30, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": HELIXCTL_REDIRECT,
        "client_id": HELIXCTL, "code_verifier": verifier})
    assert r.status_code == 200, r.text
    return r.json()["access_token"], r.json()["refresh_token"]
