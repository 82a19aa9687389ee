"""The model catalogue's API (issue 15) on a helix-authz started without
--xds-address, as this suite's are: it asks for credentials first, then
says the catalogue is not configured. The catalogue itself (helix-xds's
list filtered by caller) is tested in Go against helix-xds's real Catalog
service (extauthz/server TestModelCatalogue) and end to end through the
gateway in e2e."""

from people import Client, error_of, logged_in


def test_catalogue_needs_credentials(authz, spec):
    anon = Client(authz, spec)
    for path in ("/api/v1/models", "/api/v1/models/simple"):
        r = anon.get(path)
        assert r.status_code == 401 and error_of(r) == "unauthorized", (path, r.text)
        r = anon.get(path, headers={"x-api-key": "hx_not-a-key"})
        assert r.status_code == 401 and error_of(r) == "unauthorized", (path, r.text)


def test_catalogue_not_configured(authz, spec, mailpit):
    c = logged_in(authz, spec, mailpit, tag="models")
    for path in ("/api/v1/models", "/api/v1/models/simple"):
        r = c.get(path)
        assert r.status_code == 503, (path, r.text)
        assert error_of(r) == "temporarily_unavailable"
        assert "not configured" in r.json()["error_description"]
    r = c.post("/api/v1/models", {})
    assert r.status_code == 405 and "GET" in r.headers["Allow"], r.text
