import base64
import json
import urllib.error
import urllib.parse
import urllib.request

import jwt
import pytest
import requests
from oauthlib.oauth2 import BackendApplicationClient
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session


def fetch(authz, client, **kw):
    session = OAuth2Session(client=BackendApplicationClient(client_id=client["client_id"]))
    return session.fetch_token(token_url=f"{authz.issuer}/oauth2/token", client_id=client["client_id"],
                               client_secret=client["client_secret"], verify=str(authz.tls["ca"]), **kw)


def verify(authz, token, audience=None):
    """Verifies a token the way any resource server would: keys from the
    JWKS the metadata document names."""
    meta = requests.get(f"{authz.issuer}/.well-known/oauth-authorization-server", verify=str(authz.tls["ca"])).json()
    jwks = jwt.PyJWKClient(meta["jwks_uri"], ssl_context=authz.ssl)
    key = jwks.get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=["ES256", "RS256"], audience=audience or authz.audience,
                      issuer=authz.issuer, options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]})


def test_metadata_document(authz):
    meta = requests.get(f"{authz.issuer}/.well-known/oauth-authorization-server", verify=str(authz.tls["ca"])).json()
    assert meta["issuer"] == authz.issuer
    assert meta["token_endpoint"] == f"{authz.issuer}/oauth2/token"
    assert "client_credentials" in meta["grant_types_supported"]
    assert {"client_secret_basic", "client_secret_post"} <= set(meta["token_endpoint_auth_methods_supported"])


def test_client_secret_basic_and_rfc9068_claims(authz, client):
    tok = fetch(authz, client)  # requests-oauthlib uses HTTP Basic by default
    assert tok["token_type"].lower() == "bearer" and tok["expires_in"] > 0
    header = jwt.get_unverified_header(tok["access_token"])
    assert header["typ"].lower() in ("at+jwt", "application/at+jwt") and header["kid"]
    claims = verify(authz, tok["access_token"])
    assert claims["sub"] == claims["client_id"] == client["client_id"]
    assert set(claims["scope"].split()) == {"models:simple:infer", "models:read"}
    assert claims["exp"] - claims["iat"] <= 3600


def test_client_secret_post(authz, client):
    r = requests.post(f"{authz.issuer}/oauth2/token", verify=str(authz.tls["ca"]), data={
        "grant_type": "client_credentials", "client_id": client["client_id"],
        "client_secret": client["client_secret"], "scope": "models:read"})
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    claims = verify(authz, r.json()["access_token"])
    assert claims["scope"] == "models:read"


def test_scope_escalation_is_invalid_scope(authz, client):
    with pytest.raises(Exception) as exc:
        fetch(authz, client, scope=["models:infer"])
    assert "invalid_scope" in str(exc.value)


@pytest.mark.parametrize("secret", ["wrong", "", "' OR 1=1 --"])
def test_bad_secret_is_invalid_client(authz, client, secret):
    r = requests.post(f"{authz.issuer}/oauth2/token", verify=str(authz.tls["ca"]),
                      data={"grant_type": "client_credentials"}, auth=HTTPBasicAuth(client["client_id"], secret))
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" in r.headers


def test_unsupported_grant(authz, client):
    r = requests.post(f"{authz.issuer}/oauth2/token", verify=str(authz.tls["ca"]),
                      data={"grant_type": "password", "username": "a", "password": "b"},
                      auth=HTTPBasicAuth(client["client_id"], client["client_secret"]))
    assert r.status_code == 400 and r.json()["error"] in ("unsupported_grant_type", "unauthorized_client")


def test_introspection_and_revocation(authz, client):
    tok = fetch(authz, client)["access_token"]
    auth = HTTPBasicAuth(client["client_id"], client["client_secret"])
    ca = str(authz.tls["ca"])
    r = requests.post(f"{authz.issuer}/oauth2/introspect", data={"token": tok}, auth=auth, verify=ca)
    assert r.status_code == 200 and r.json()["active"] is True, r.text
    assert r.json()["client_id"] == client["client_id"]
    r = requests.post(f"{authz.issuer}/oauth2/revoke", data={"token": tok}, auth=auth, verify=ca)
    assert r.status_code == 200, r.text
    r = requests.post(f"{authz.issuer}/oauth2/introspect", data={"token": tok}, auth=auth, verify=ca)
    assert r.json() == {"active": False}
    # Unauthenticated introspection is refused.
    r = requests.post(f"{authz.issuer}/oauth2/introspect", data={"token": tok}, verify=ca)
    assert r.status_code == 401


def test_disabled_client_gets_no_token(authz):
    c = authz.helixctl("clients", "create", "--name", "to-disable", "--scope", "models:read")
    fetch(authz, c)
    authz.helixctl("clients", "update", c["client_id"], "--disable")
    with pytest.raises(Exception) as exc:
        fetch(authz, c)
    assert "invalid_client" in str(exc.value)


def test_rotated_secret(authz):
    c = authz.helixctl("clients", "create", "--name", "to-rotate", "--scope", "models:read")
    rotated = authz.helixctl("clients", "rotate-secret", c["client_id"])
    assert rotated["client_secret"] != c["client_secret"]
    with pytest.raises(Exception):
        fetch(authz, c)
    fetch(authz, rotated)


def test_key_rotation_keeps_old_tokens_valid(authz, client):
    before = fetch(authz, client)["access_token"]
    kid = authz.helixctl("keys", "rotate")["kid"]
    jwks = requests.get(f"{authz.issuer}/.well-known/jwks.json", verify=str(authz.tls["ca"])).json()
    kids = [k["kid"] for k in jwks["keys"]]
    assert kid in kids and jwt.get_unverified_header(before)["kid"] in kids
    assert all("d" not in k for k in jwks["keys"]), "private key material in the JWKS"
    verify(authz, before)
