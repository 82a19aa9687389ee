"""api/openapi.yaml checked by schemathesis against helix-authz's public
port (the shared stack): every operation, positive and negative cases, no
5xx, status codes, content types, schemas and headers as documented.

Callers are real: people signed up, verified through mailpit and logged in
(their session cookie, and X-CSRF-Token on unsafe methods), a machine
client with its access token, HTTP Basic credentials and an API key.
Positive cases are pointed at objects this module made (an organization
with a client, keys and a member; a model the stack serves) so that they
reach the code past the lookups. Operations that end or erase something get
objects of their own: logout ends a second person's session, deleteAccount
erases a third person, deleteOrg, deleteClient and revokeAPIKey take spare
ones; the main person's session is never ended."""

import os
import pathlib
import random
import time

import pytest
from schemathesis import GenerationMode

from openapi_authz_util import (MODES, Fuzzer, PersonToken, PublicAPI, authorize_query, load, operations,
                                source_address)

SCHEMA = load(pathlib.Path(__file__).resolve().parents[2] / "api" / "openapi.yaml")
OPS = operations(SCHEMA)
# Per operation: at most COVERAGE of schemathesis' coverage cases (evenly
# spread), then EXAMPLES generated ones per generation mode (derandomized;
# an operation without parameters gets one). About 1250 requests: 25-30 s
# on the dev stack (2 cores shared), signed-up people and password hashes
# included. HELIX_OPENAPI_AUTHZ_SCALE=10 searches ten times deeper.
SCALE = int(os.environ.get("HELIX_OPENAPI_AUTHZ_SCALE", "1"))
COVERAGE = 30 * SCALE
EXAMPLES = 6 * SCALE
# Fewer examples where each case costs a password hash or a mail.
LIMITED = {
    "POST /api/v1/signup": 4,
    "POST /api/v1/login": 4,
    "POST /api/v1/password-reset": 4,
    "POST /api/v1/password-reset/confirm": 4,
    "POST /api/v1/account/password": 4,
    "POST /api/v1/account/email": 4,
    "DELETE /api/v1/account": 4,
}
SESSION = "__Host-helix_session"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture(scope="module")
def authz_ctx(helix_stack):
    info = helix_stack.info
    pub = PublicAPI(info["issuer"], helix_stack.ca_file, info["mailpit_url"])
    main, other, doomed = pub.person("openapi-main"), pub.person("openapi-other"), pub.person("openapi-doomed")

    def call(method, path, body=None, want=(200, 201)):
        r = pub.call(method, path, body, cookie=main["cookie"], csrf=main["csrf"])
        assert r.status_code in want, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    org = call("POST", "/api/v1/orgs", {"name": "openapi-org"})["id"]
    spare_org = call("POST", "/api/v1/orgs", {"name": "openapi-spare-org"})["id"]
    client = call("POST", f"/api/v1/orgs/{org}/clients", {"name": "openapi", "scopes": ["models:read"]})
    spare_client = call("POST", f"/api/v1/orgs/{org}/clients", {"name": "openapi-spare", "scopes": ["models:read"]})
    key = call("POST", f"/api/v1/orgs/{org}/apikeys", {"client_id": client["client_id"], "name": "openapi"})
    spare_key = call("POST", f"/api/v1/orgs/{org}/apikeys", {"client_id": client["client_id"], "name": "spare"})
    call("POST", f"/api/v1/orgs/{org}/members", {"email": other["email"], "role": "viewer"})
    models = [m["name"] for m in call("GET", "/api/v1/models")["models"]]
    machine = helix_stack.client("openapi-authz", "models:read,models:infer")
    yield {
        "main": main, "other": other, "doomed": doomed, "org": org, "spare_org": spare_org,
        "client": client["client_id"], "spare_client": spare_client["client_id"],
        "key": key["id"], "spare_key": spare_key["id"], "models": models or ["simple"],
        "machine": machine, "machine_key": helix_stack.api_key(machine),
        "bearer": PersonToken(pub, main),
    }
    pub.call("DELETE", f"/api/v1/orgs/{spare_org}", cookie=main["cookie"], csrf=main["csrf"])


class MachineToken:
    """The machine client's access token, fetched again before it expires
    (tokens live 20 s in the stack)."""

    def __init__(self):
        self.token, self.at = None, 0.0

    def get(self, machine):
        if self.token is None or time.monotonic() - self.at > 10:
            self.token, self.at = machine.token(), time.monotonic()
        return self.token


TOKEN = MachineToken()
# The kinds of credentials the cases carried.
AUTH_USED = set()


def _targets(ctx, label):
    """Path parameters a positive case of label gets (None: generated)."""
    special = {
        "DELETE /api/v1/orgs/{org}": {"org": ctx["spare_org"]},
        "DELETE /api/v1/orgs/{org}/clients/{id}": {"org": ctx["org"], "id": ctx["spare_client"]},
        "DELETE /api/v1/orgs/{org}/apikeys/{id}": {"org": ctx["org"], "id": ctx["spare_key"]},
    }
    if label in special:
        return special[label]
    pp = {}
    if "{org}" in label:
        pp["org"] = ctx["org"]
    if "/clients/{id}" in label:
        pp["id"] = ctx["client"]
    if "/apikeys/{id}" in label:
        pp["id"] = ctx["key"]
    if "{user}" in label:
        pp["user"] = ctx["other"]["id"]
    if "{model}" in label:
        pp["model"] = ctx["models"][0]
    return pp or None


def prepare(ctx, label, op):
    rnd = random.Random(label)
    method = label.split(" ", 1)[0]
    security = op.definition.raw.get("security", SCHEMA.raw_schema.get("security", []))
    schemes = {name for req in security for name in req}
    positive_body = _positive_bodies(ctx)

    def f(case, mode):
        headers = dict(case.headers or {})
        headers["X-Forwarded-For"] = source_address()
        kw = {"headers": headers}
        person = ctx["main"]
        if label == "POST /api/v1/logout":
            person = ctx["other"]
        elif label == "DELETE /api/v1/account":
            person = ctx["doomed"]
        pick = rnd.random()
        machine = schemes & {"clientToken", "apiKey"}
        if "bearer" in schemes and person is ctx["main"] and 0.5 <= pick < 0.75:
            # The person's access token with scope account (no CSRF token).
            headers["Authorization"] = f"Bearer {ctx['bearer'].get()}"
            AUTH_USED.add("person token")
        elif "session" in schemes and not (machine and pick < 0.5):
            headers["Cookie"] = f"{SESSION}={person['cookie']}"
            if method in UNSAFE:
                headers["X-CSRF-Token"] = person["csrf"]
            AUTH_USED.add("session cookie")
        elif machine:
            if pick < 0.75:
                headers["Authorization"] = f"Bearer {TOKEN.get(ctx['machine'])}"
                AUTH_USED.add("client token")
            else:
                headers["x-api-key"] = ctx["machine_key"]
                AUTH_USED.add("API key")
        elif "clientBasic" in schemes and (label == "POST /oauth2/introspect" or pick < 0.6):
            m = ctx["machine"]
            kw["auth"] = (m.id, m.secret)
            AUTH_USED.add("HTTP Basic")
        case.headers = headers
        if rnd.random() < 0.3:
            return kw
        # Real objects: positive cases reach the work, negative ones (bad
        # bodies, queries) the validation past the lookups.
        pp = _targets(ctx, label)
        if pp and case.path_parameters is not None:
            case.path_parameters.update(pp)
        if mode != GenerationMode.POSITIVE:
            return kw
        if label == "GET /oauth2/authorize" and rnd.random() < 0.5:
            case.query = authorize_query()
        make = positive_body.get(label)
        if make is not None and rnd.random() < 0.5:
            case.body = make(person)
            if "auth" in kw and isinstance(case.body, dict):
                case.body.pop("client_id", None)
        return kw

    return f


def _positive_bodies(ctx):
    """Bodies that get past validation to the real work, for some positive
    cases (generated ones mostly stop at a field check)."""
    return {
        "POST /api/v1/login": lambda p: {"email": ctx["main"]["email"], "password": ctx["main"]["password"]},
        "DELETE /api/v1/account": lambda p: {"password": p["password"]},
        "POST /api/v1/orgs/{org}/apikeys": lambda p: {"client_id": ctx["client"], "name": "openapi-fuzz"},
        "POST /api/v1/orgs/{org}/clients": lambda p: {"name": "openapi-fuzz", "scopes": ["models:read"]},
        "POST /api/v1/orgs/{org}/members": lambda p: {"email": ctx["other"]["email"], "role": "member"},
        "POST /oauth2/token": lambda p: {"grant_type": "client_credentials"},
        "POST /oauth2/introspect": lambda p: {"token": TOKEN.get(ctx["machine"])},
        "POST /oauth2/revoke": lambda p: {"token": "not-a-token"},
    }


FUZZ = Fuzzer(None, None)


@pytest.mark.parametrize("label", list(OPS))
def test_public_operation(helix_stack, authz_ctx, label):
    FUZZ.base_url = helix_stack.info["issuer"]
    FUZZ.verify = helix_stack.ca_file
    op = OPS[label]
    fix = prepare(authz_ctx, label, op)
    FUZZ.coverage(op, fix, COVERAGE)
    FUZZ.run(op, fix, LIMITED.get(label, EXAMPLES), modes=MODES)


def test_every_public_operation_was_answered():
    """Runs after the operations' tests (file order): each one of
    api/openapi.yaml reached the server at least once."""
    print(f"{FUZZ.calls} requests")
    for label, counts in sorted(FUZZ.statuses.items()):
        print(f"{label}: {dict(sorted(counts.items()))}")
    missing = sorted(set(OPS) - FUZZ.answered)
    assert not missing, f"operations of api/openapi.yaml never answered: {missing}"
    kinds = {"session cookie", "person token", "client token", "API key", "HTTP Basic"}
    assert AUTH_USED == kinds, f"credentials no case carried: {sorted(kinds - AUTH_USED)}"
