"""api/admin.yaml checked by schemathesis against helix-authz's admin port
(the shared stack): every operation, positive and negative cases, no 5xx,
status codes, content types, schemas and headers as documented.

Authentication is the admin token with a Helix-Operator header. Positive
cases are pointed at objects this module made (a client, keys, a person, an
organization) so that they reach the code past the lookups; destructive
operations get objects of their own: deleteClient a spare client,
revokeAPIKey a spare key, eraseUser a spare person, and the signing key is
rotated once (a rotation publishes the new key ahead of its use and keeps
the old one, so other suites' tokens keep working)."""

import json
import os
import pathlib
import random
import urllib.error
import urllib.request

import pytest
from schemathesis import GenerationMode

from openapi_authz_util import MODES, Fuzzer, PersonToken, PublicAPI, load, operations

SCHEMA = load(pathlib.Path(__file__).resolve().parents[2] / "api" / "admin.yaml")
OPS = operations(SCHEMA)
OPERATOR = "openapi-admin-test"
# Per operation: at most COVERAGE of schemathesis' coverage cases (evenly
# spread), then EXAMPLES generated ones per generation mode (derandomized).
# About 800 requests: 15-20 s on the dev stack (2 cores shared).
# HELIX_OPENAPI_AUTHZ_SCALE=10 searches ten times deeper.
SCALE = int(os.environ.get("HELIX_OPENAPI_AUTHZ_SCALE", "1"))
COVERAGE = 30 * SCALE
EXAMPLES = 8 * SCALE
# Operations run with fewer examples, and why.
LIMITED = {
    "POST /admin/v1/keys/rotate": 1,  # each call adds a signing key for the whole stack
    "POST /admin/v1/users/{id}/erase": 3,  # erasure is a big transaction; the spare is erased once
}


class Admin:
    """The admin API for set-up, outside the fuzzing."""

    def __init__(self, url, token):
        self.url, self.token = url, token

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Helix-Operator": OPERATOR, "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def admin_ctx(helix_stack):
    info = helix_stack.info
    adm = Admin(info["admin_url"], info["admin_token"])
    pub = PublicAPI(info["issuer"], helix_stack.ca_file, info["mailpit_url"])
    client = adm.call("POST", "/admin/v1/clients", {"name": "openapi-admin", "scopes": ["models:read"]})
    spare = adm.call("POST", "/admin/v1/clients", {"name": "openapi-admin-spare", "scopes": ["models:read"]})
    key = adm.call("POST", "/admin/v1/apikeys", {"client_id": client["client_id"], "name": "openapi"})
    spare_key = adm.call("POST", "/admin/v1/apikeys", {"client_id": client["client_id"], "name": "openapi-spare"})
    person = pub.person("openapi-admin")
    victim = pub.person("openapi-erase")
    org = adm.call("POST", "/admin/v1/orgs", {"name": "openapi-admin-org", "owner": person["id"]})
    # A platform admin's token (scope helix:admin) and a person's without it.
    boss = pub.person("openapi-platform-admin")
    adm.call("PATCH", f"/admin/v1/users/{boss['id']}", {"platform_admin": True})
    ctx = {"client": client["client_id"], "spare_client": spare["client_id"], "key": key["id"],
           "spare_key": spare_key["id"], "user": person["id"], "email": person["email"],
           "victim": victim["id"], "org": org["id"],
           "admin_person": PersonToken(pub, boss, "account helix:admin"), "person": PersonToken(pub, person)}
    yield ctx
    # The module's clients go (the erased person and the orgs stay: an
    # erasure is final, and the admin API deletes no organization).
    for c in (client["client_id"], spare["client_id"], *CREATED):
        try:
            adm.call("DELETE", f"/admin/v1/clients/{c}")
        except urllib.error.HTTPError:
            pass


# Path parameters of positive cases: which object each operation gets.
def _targets(ctx):
    return {
        "DELETE /admin/v1/clients/{id}": {"id": ctx["spare_client"]},
        "DELETE /admin/v1/apikeys/{id}": {"id": ctx["spare_key"]},
        "POST /admin/v1/users/{id}/erase": {"id": ctx["victim"]},
        "clients": {"id": ctx["client"]},
        "users": {"id": ctx["user"]},
        "orgs": {"org": ctx["org"]},
    }


FUZZ = Fuzzer(None, None)
# The kinds of credentials the cases carried.
AUTH_USED = set()


def prepare(ctx, label):
    targets = _targets(ctx)
    rnd = random.Random(label)

    def f(case, mode):
        headers = case.headers if case.headers is not None else {}
        pick = rnd.random()
        if pick < 0.65:
            headers["Authorization"] = f"Bearer {ctx['token']}"
            AUTH_USED.add("admin token")
        elif pick < 0.85:
            headers["Authorization"] = f"Bearer {ctx['admin_person'].get()}"
            AUTH_USED.add("platform admin token")
        elif pick < 0.93:
            headers["Authorization"] = f"Bearer {ctx['person'].get()}"  # 403: no helix:admin
            AUTH_USED.add("person token")
        else:
            headers.pop("Authorization", None)  # 401
            AUTH_USED.add("none")
        # Mostly a valid operator, so that negative cases reach more than
        # the header check; now and then the generated one.
        if "Helix-Operator" not in headers or rnd.random() < 0.85:
            headers["Helix-Operator"] = OPERATOR
        case.headers = headers
        if rnd.random() < 0.3:
            return None
        # Real objects: positive cases reach the work, negative ones (bad
        # bodies, queries) the validation past the lookups.
        pp = targets.get(label) or next((v for k, v in targets.items() if k in label.split("/")), None)
        if pp and case.path_parameters is not None:
            case.path_parameters.update(pp)
        if mode != GenerationMode.POSITIVE:
            return None
        if isinstance(case.body, dict):
            if label == "POST /admin/v1/clients" and rnd.random() < 0.5:
                case.body = {"name": "openapi-fuzz", "scopes": ["models:read"], "models": ["simple"]}
            elif label == "POST /admin/v1/apikeys":
                case.body["client_id"] = ctx["client"]
            elif label == "POST /admin/v1/orgs":
                case.body["owner"] = ctx["email"]
        return None

    return f


@pytest.mark.parametrize("label", list(OPS))
def test_admin_operation(helix_stack, admin_ctx, label):
    FUZZ.base_url = helix_stack.info["admin_url"]
    ctx = {**admin_ctx, "token": helix_stack.info["admin_token"]}
    # The rotation has nothing to make invalid but its header: positive only,
    # so that the stack gets one new signing key per run.
    modes = (GenerationMode.POSITIVE,) if label == "POST /admin/v1/keys/rotate" else MODES
    fix = prepare(ctx, label)
    if label != "POST /admin/v1/keys/rotate":
        FUZZ.coverage(OPS[label], fix, COVERAGE, after=_remember)
    FUZZ.run(OPS[label], fix, LIMITED.get(label, EXAMPLES), modes=modes, after=_remember)


CREATED = []


def _remember(case, resp):
    """Clients the cases made, deleted at the end of the module."""
    if resp.status_code == 201 and case.path == "/admin/v1/clients":
        CREATED.append(resp.json()["client_id"])


def test_every_admin_operation_was_answered():
    """Runs after the operations' tests (file order): each one of
    api/admin.yaml reached the server at least once."""
    print(f"{FUZZ.calls} requests")
    for label, counts in sorted(FUZZ.statuses.items()):
        print(f"{label}: {dict(sorted(counts.items()))}")
    missing = sorted(set(OPS) - FUZZ.answered)
    assert not missing, f"operations of api/admin.yaml never answered: {missing}"
    kinds = {"admin token", "platform admin token", "person token", "none"}
    assert AUTH_USED == kinds, f"credentials no case carried: {sorted(kinds - AUTH_USED)}"
