"""Organizations: roles, the policy platform admins set, clients and API
keys members make within it, key rotation with an overlap."""

import datetime

import requests
from requests.auth import HTTPBasicAuth

from people import Client, error_of, logged_in


def parse_time(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def new_org(c, name="Acme"):
    r = c.post("/api/v1/orgs", {"name": name})
    assert r.status_code == 201, r.text
    return r.json()


def client_credentials(authz, client_id, secret):
    return requests.post(f"{authz.issuer}/oauth2/token", data={"grant_type": "client_credentials"},
                         auth=HTTPBasicAuth(client_id, secret), verify=str(authz.tls["ca"]), timeout=30)


def test_org_roles_and_members(authz, spec, mailpit):
    owner = logged_in(authz, spec, mailpit, tag="owner")
    member = logged_in(authz, spec, mailpit, tag="member")
    outsider = logged_in(authz, spec, mailpit, tag="outsider")
    org = new_org(owner, "Roles Inc")
    assert org["name"] == "Roles Inc"
    base = f"/api/v1/orgs/{org['id']}"

    r = owner.get("/api/v1/orgs")
    assert r.status_code == 200, r.text
    mine = [o for o in r.json()["orgs"] if o["id"] == org["id"]]
    assert mine and mine[0].get("role", "owner") == "owner"
    assert owner.get(base).status_code == 200
    r = owner.patch(base, {"name": "Roles Ltd"})
    assert r.status_code == 200 and r.json()["name"] == "Roles Ltd", r.text

    # Outsiders see nothing, not even that it exists.
    for path in (base, base + "/members", base + "/clients", base + "/apikeys", base + "/policy"):
        r = outsider.get(path)
        assert r.status_code == 404 and error_of(r) == "not_found", (path, r.text)
    assert org["id"] not in [o["id"] for o in outsider.get("/api/v1/orgs").json()["orgs"]]

    r = owner.post(base + "/members", {"email": "nobody-" + member.email, "role": "member"})
    assert r.status_code in (400, 404), r.text
    r = owner.post(base + "/members", {"email": member.email, "role": "emperor"})
    assert r.status_code == 400 and "role" in r.json()["error_description"], r.text
    r = owner.post(base + "/members", {"email": member.email, "role": "viewer"})
    assert r.status_code == 201, r.text
    uid = r.json()["user_id"]
    assert uid == member.user["id"]
    r = owner.post(base + "/members", {"email": member.email, "role": "viewer"})
    assert r.status_code == 409, r.text
    members = owner.get(base + "/members").json()["members"]
    assert {m["user_id"]: m["role"] for m in members} == {owner.user["id"]: "owner", uid: "viewer"}

    # A viewer reads, and changes nothing.
    assert member.get(base).status_code == 200
    assert member.get(base + "/clients").status_code == 200
    r = member.post(base + "/clients", {"name": "nope", "scopes": ["models:read"]})
    assert r.status_code == 403 and error_of(r) == "forbidden", r.text
    r = member.patch(base, {"name": "mine now"})
    assert r.status_code == 403, r.text
    r = member.patch(f"{base}/members/{uid}", {"role": "owner"})
    assert r.status_code == 403, "a viewer must not promote themself"

    r = owner.patch(f"{base}/members/{uid}", {"role": "member"})
    assert r.status_code == 200 and r.json()["role"] == "member", r.text
    r = member.post(base + "/members", {"email": outsider.email, "role": "viewer"})
    assert r.status_code == 403, "members do not manage members"

    # The last owner stays.
    r = owner.patch(f"{base}/members/{owner.user['id']}", {"role": "admin"})
    assert r.status_code == 409, r.text
    r = owner.delete(f"{base}/members/{owner.user['id']}")
    assert r.status_code == 409, r.text

    r = owner.delete(f"{base}/members/{uid}")
    assert r.status_code == 204, r.text
    assert member.get(base).status_code == 404

    assert member.delete(base).status_code == 404
    r = owner.delete(base)
    assert r.status_code == 204, r.text
    assert owner.get(base).status_code == 404


def test_clients_and_keys_within_the_policy(authz, spec, mailpit):
    owner = logged_in(authz, spec, mailpit, tag="keys")
    org = new_org(owner, "Keys Inc")
    base = f"/api/v1/orgs/{org['id']}"
    policy = owner.get(base + "/policy")
    assert policy.status_code == 200, policy.text
    policy = policy.json()
    assert set(policy["allowed_scopes"]) == {"models:infer", "models:read"}
    assert policy["allowed_plans"] == ["free"], "the gateway's default plan"
    assert (policy["max_api_keys"], policy["max_clients"]) == (10, 5)

    r = owner.post(base + "/clients", {"name": "too much", "scopes": ["models:read", "helix:admin"]})
    assert r.status_code == 403 and "helix:admin" in r.json()["error_description"], r.text
    r = owner.post(base + "/clients", {"name": "gold", "scopes": ["models:read"], "plan": "gold"})
    assert r.status_code == 403 and "gold" in r.json()["error_description"], r.text

    r = owner.post(base + "/clients", {"name": "app", "scopes": ["models:infer", "models:read"]})
    assert r.status_code == 201, r.text
    cl = r.json()
    assert cl["client_secret"] and cl["plan"] == "free"
    assert client_credentials(authz, cl["client_id"], cl["client_secret"]).status_code == 200
    listed = owner.get(base + "/clients").json()["clients"]
    assert [c["client_id"] for c in listed] == [cl["client_id"]]
    assert all("client_secret" not in c for c in listed), "a secret is shown once"
    got = owner.get(f"{base}/clients/{cl['client_id']}")
    assert got.status_code == 200 and "client_secret" not in got.json(), got.text
    r = owner.patch(f"{base}/clients/{cl['client_id']}", {"name": "app v2"})
    assert r.status_code == 200 and r.json()["name"] == "app v2", r.text

    r = owner.post(f"{base}/clients/{cl['client_id']}/rotate-secret")
    assert r.status_code == 200, r.text
    rotated = r.json()["client_secret"]
    assert rotated != cl["client_secret"]
    assert client_credentials(authz, cl["client_id"], cl["client_secret"]).status_code == 401
    assert client_credentials(authz, cl["client_id"], rotated).status_code == 200

    # Keys: made, listed with usage, rotated with an overlap, revoked.
    r = owner.post(base + "/apikeys", {"client_id": cl["client_id"], "name": "ci"})
    assert r.status_code == 201, r.text
    key = r.json()
    assert key["key"] and key["client_id"] == cl["client_id"]
    listed = owner.get(base + "/apikeys").json()["apikeys"]
    assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0]
    assert isinstance(listed[0].get("usage", []), list)

    r = owner.post(f"{base}/apikeys/{key['id']}/rotate", {"overlap": "721h"})
    assert r.status_code == 400 and "overlap" in r.json()["error_description"], r.text
    before = datetime.datetime.now(datetime.timezone.utc)
    r = owner.post(f"{base}/apikeys/{key['id']}/rotate", {"overlap": "24h"})
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["key"] and new["key"] != key["key"] and new.get("replaces") == key["id"]
    old = next(k for k in owner.get(base + "/apikeys").json()["apikeys"] if k["id"] == key["id"])
    left = parse_time(old["expires_at"]) - before
    assert datetime.timedelta(hours=23) < left <= datetime.timedelta(hours=24, minutes=5), old

    r = owner.delete(f"{base}/apikeys/{new['id']}")
    assert r.status_code == 204, r.text
    after = {k["id"]: k for k in owner.get(base + "/apikeys").json()["apikeys"]}
    assert new["id"] not in after or after[new["id"]].get("revoked_at"), after.get(new["id"])

    # Another org's ids are unknown here.
    other = new_org(owner, "Other Inc")
    assert owner.get(f"/api/v1/orgs/{other['id']}/clients/{cl['client_id']}").status_code == 404
    assert owner.delete(f"/api/v1/orgs/{other['id']}/apikeys/{key['id']}").status_code == 404

    r = owner.delete(f"{base}/clients/{cl['client_id']}")
    assert r.status_code == 204, r.text
    assert owner.get(f"{base}/clients/{cl['client_id']}").status_code == 404
    assert client_credentials(authz, cl["client_id"], rotated).status_code == 401


def test_client_count_limit(authz, spec, mailpit):
    owner = logged_in(authz, spec, mailpit, tag="limits")
    base = f"/api/v1/orgs/{new_org(owner, 'Limits Inc')['id']}"
    limit = owner.get(base + "/policy").json()["max_clients"]
    for i in range(limit):
        r = owner.post(base + "/clients", {"name": f"c{i}", "scopes": ["models:read"]})
        assert r.status_code == 201, r.text
    r = owner.post(base + "/clients", {"name": "one too many", "scopes": ["models:read"]})
    assert r.status_code == 409 and error_of(r) == "conflict", r.text


def test_org_ids_that_are_not_uuids(authz, spec, mailpit):
    c = logged_in(authz, spec, mailpit)
    for org in ["not-a-uuid", "1%20OR%201=1", "'%20OR%20''='"]:
        r = c.get(f"/api/v1/orgs/{org}")
        assert r.status_code in (400, 404), r.text
    assert Client(authz, spec).get("/api/v1/orgs").status_code == 401
