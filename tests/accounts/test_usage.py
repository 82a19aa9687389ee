"""The usage ledger's reports (issue 15) on the public port: an
organization's members read its clients' usage, others get 404, bad
parameters are 400 naming them, CSV has the JSON rows' columns; a client
reads its own usage with its token. The counting itself (workers' and
helix-authz's batches, applied exactly once) is tested in Go
(extauthz/usage, extauthz/server) against Postgres."""

import csv
import io

from people import Client, error_of, logged_in
from test_orgs import client_credentials, new_org

COLUMNS = ["start", "client_id", "model", "requests", "inferences", "errors", "throttled",
           "compute_seconds", "latency_p50_ms", "latency_p99_ms"]


def test_org_usage(authz, spec, mailpit):
    owner = logged_in(authz, spec, mailpit, tag="usage-owner")
    outsider = logged_in(authz, spec, mailpit, tag="usage-outsider")
    org = new_org(owner, "Usage Inc")
    path = f"/api/v1/orgs/{org['id']}/usage"

    r = Client(authz, spec).get(path)
    assert r.status_code == 401 and error_of(r) == "unauthorized", r.text
    r = outsider.get(path)
    assert r.status_code == 404 and error_of(r) == "not_found", r.text

    r = owner.get(path)
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["granularity"] == "hour" and rep["rows"] == [] and rep["totals"]["requests"] == 0, rep
    r = owner.get(path + "?granularity=day&from=2026-01-01&to=2026-01-31&model=simple")
    assert r.status_code == 200 and r.json()["granularity"] == "day", r.text

    for query, names in (("granularity=week", "granularity"), ("from=yesterday", "from"),
                         ("from=2025-01-01&to=2026-01-01", "93 days"), ("limit=1", "limit"),
                         ("format=xml", "format")):
        r = owner.get(path + "?" + query)
        assert r.status_code == 400 and error_of(r) == "invalid_request", (query, r.text)
        assert names in r.json()["error_description"], (query, r.text)

    r = owner.get(path + "?format=csv")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv"), r.text
    assert "attachment" in r.headers["Content-Disposition"]
    assert list(csv.reader(io.StringIO(r.text))) == [COLUMNS]


def test_client_usage(authz, spec, mailpit):
    anon = Client(authz, spec)
    r = anon.get("/api/v1/usage")
    assert r.status_code == 401 and error_of(r) == "unauthorized", r.text
    r = anon.get("/api/v1/usage", headers={"x-api-key": "hx_not-a-key"})
    assert r.status_code == 401, r.text

    owner = logged_in(authz, spec, mailpit, tag="usage-client")
    org = new_org(owner, "Usage Client Inc")
    r = owner.post(f"/api/v1/orgs/{org['id']}/clients", {"name": "app", "scopes": ["models:infer"]})
    assert r.status_code == 201, r.text
    cl = r.json()
    tok = client_credentials(authz, cl["client_id"], cl["client_secret"])
    assert tok.status_code == 200, tok.text
    r = anon.get("/api/v1/usage?granularity=day", headers={"Authorization": "Bearer " + tok.json()["access_token"]})
    assert r.status_code == 200 and r.json()["rows"] == [], r.text
    r = anon.get("/api/v1/usage?to=nope", headers={"Authorization": "Bearer " + tok.json()["access_token"]})
    assert r.status_code == 400 and "to" in r.json()["error_description"], r.text
