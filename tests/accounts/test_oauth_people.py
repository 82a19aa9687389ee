"""OAuth 2.0 for people, driven by a real OAuth library (authlib): the
authorization code grant with PKCE S256 as helixctl uses it (public client,
loopback redirect URI, RFC 8252), refresh-token rotation and replay
detection (RFC 9700 4.14), revocation; and the attacks on it: PKCE plain or
missing, redirect URI variants, code reuse, open redirects from /login.

The browser is a requests session that logs in through the /login form
(with the CSRF token the form carries) and follows helix-authz's own
redirects, never the one to the client: the code is read from Location."""

import base64
import hashlib
import secrets
import urllib.parse

import jwt
import pytest
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from people import PASSWORD, Client, session, submit_login_form, verified_user

CLI = "helixctl"  # the first-party public client helix-authz ensures at start


def loopback(port=None):
    return f"http://127.0.0.1:{port or secrets.randbelow(20000) + 40000}/callback"


def browser(authz, spec):
    return session(authz, spec)


def authorize(authz, b, url, email, password=PASSWORD):
    """Opens url in browser b; when helix-authz sends it to /login, logs in
    through the form and goes on. Returns the first answer that is not a
    redirect within helix-authz (the redirect to the client, or an error)."""
    r = b.get(url, allow_redirects=False)
    for _ in range(6):
        if r.status_code not in (301, 302, 303, 307):
            return r
        loc = urllib.parse.urljoin(r.url, r.headers["Location"])
        if not loc.startswith(authz.issuer + "/"):
            return r
        if urllib.parse.urlsplit(loc).path == "/login":
            page = b.get(loc)
            assert page.status_code == 200, page.text
            r = submit_login_form(b, loc, page.text, email, password)
            assert r.status_code in (302, 303), f"login form: {r.status_code} {r.text[:300]}"
            continue
        r = b.get(loc, allow_redirects=False)
    return r


def location_params(r):
    loc = r.headers["Location"]
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)
    return loc, {k: v[0] for k, v in q.items()}


def oauth_client(authz, spec, redirect_uri, client_id=CLI, scope="account models:read"):
    return session(authz, spec, s=OAuth2Session(client_id=client_id, scope=scope, redirect_uri=redirect_uri,
                                                code_challenge_method="S256", token_endpoint_auth_method="none"))


def grant(authz, spec, email, scope="account models:read", redirect_uri=None):
    """A full authorization-code grant with authlib; returns (client,
    token, user's browser)."""
    redirect_uri = redirect_uri or loopback()
    c = oauth_client(authz, spec, redirect_uri, scope=scope)
    verifier = generate_token(64)
    url, state = c.create_authorization_url(f"{authz.issuer}/oauth2/authorize", code_verifier=verifier)
    b = browser(authz, spec)
    r = authorize(authz, b, url, email)
    assert r.status_code in (302, 303), f"{r.status_code} {r.text[:300]}"
    loc, params = location_params(r)
    assert loc.startswith(redirect_uri + "?"), loc
    assert params["state"] == state and "code" in params, params
    token = c.fetch_token(f"{authz.issuer}/oauth2/token", authorization_response=loc, code_verifier=verifier)
    return c, token, b


def claims_of(authz, token):
    jwks = jwt.PyJWKClient(f"{authz.issuer}/.well-known/jwks.json", ssl_context=authz.ssl)
    key = jwks.get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=["ES256", "RS256"], issuer=authz.issuer,
                      options={"verify_aud": False, "require": ["exp", "iat", "iss", "sub", "jti"]})


def bearer(authz, spec, access_token):
    c = Client(authz, spec)
    c.bearer = access_token
    return c


@pytest.fixture
def person(authz, spec, mailpit):
    return verified_user(authz, spec, mailpit, tag="oauth")


def test_metadata_names_the_code_flow(authz, spec):
    r = browser(authz, spec).get(f"{authz.issuer}/.well-known/oauth-authorization-server")
    assert r.status_code == 200, r.text
    meta = r.json()
    assert meta["authorization_endpoint"] == f"{authz.issuer}/oauth2/authorize"
    assert meta["response_types_supported"] == ["code"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert {"authorization_code", "refresh_token", "client_credentials"} <= set(meta["grant_types_supported"])
    # The key set it names answers as api/openapi.yaml says.
    keys = browser(authz, spec).get(meta["jwks_uri"])
    assert keys.status_code == 200 and keys.json()["keys"], keys.text


def test_authorization_code_pkce_and_refresh_with_authlib(authz, spec, person):
    c, token, b = grant(authz, spec, person)
    assert token["token_type"].lower() == "bearer" and token["refresh_token"]
    claims = claims_of(authz, token["access_token"])
    me = bearer(authz, spec, token["access_token"]).get("/api/v1/account")
    assert me.status_code == 200, me.text
    assert me.json()["email"] == person
    assert claims["sub"] == me.json()["id"] and claims["client_id"] == CLI and claims["sid"]
    assert set(claims["scope"].split()) == {"account", "models:read"}

    sessions = bearer(authz, spec, token["access_token"]).get("/api/v1/account/sessions").json()["sessions"]
    tok = [s for s in sessions if s["kind"] == "token"]
    assert [(s["id"], s["client_id"], s["current"]) for s in tok] == [(claims["sid"], CLI, True)]

    refreshed = c.refresh_token(f"{authz.issuer}/oauth2/token")
    assert refreshed["refresh_token"] != token["refresh_token"], "refresh tokens rotate on every use"
    assert refreshed["access_token"] != token["access_token"]
    assert claims_of(authz, refreshed["access_token"])["sid"] == claims["sid"], "the same token session"
    assert bearer(authz, spec, refreshed["access_token"]).get("/api/v1/account").status_code == 200
    again = c.refresh_token(f"{authz.issuer}/oauth2/token")
    assert again["refresh_token"] not in (token["refresh_token"], refreshed["refresh_token"])


def test_refresh_token_replay_revokes_the_family(authz, spec, person):
    c, first, _ = grant(authz, spec, person)
    second = c.refresh_token(f"{authz.issuer}/oauth2/token")
    with pytest.raises(OAuthError) as exc:
        c.refresh_token(f"{authz.issuer}/oauth2/token", refresh_token=first["refresh_token"])
    assert exc.value.error == "invalid_grant"
    # The whole family is dead: the newest refresh token, and every access
    # token of the session.
    with pytest.raises(OAuthError) as exc:
        c.refresh_token(f"{authz.issuer}/oauth2/token", refresh_token=second["refresh_token"])
    assert exc.value.error == "invalid_grant"
    for t in (first, second):
        r = bearer(authz, spec, t["access_token"]).get("/api/v1/account")
        assert r.status_code == 401, r.text


def test_code_is_single_use_and_bound_to_its_redirect_uri(authz, spec, person):
    redirect = loopback()
    c = oauth_client(authz, spec, redirect)
    verifier = generate_token(64)
    url, _ = c.create_authorization_url(f"{authz.issuer}/oauth2/authorize", code_verifier=verifier)
    loc, params = location_params(authorize(authz, browser(authz, spec), url, person))
    token_url = f"{authz.issuer}/oauth2/token"
    other = oauth_client(authz, spec, loopback())  # a different redirect_uri at the token endpoint
    with pytest.raises(OAuthError) as exc:
        other.fetch_token(token_url, code=params["code"], code_verifier=verifier)
    assert exc.value.error in ("invalid_grant", "invalid_request")
    c2 = oauth_client(authz, spec, redirect)
    with pytest.raises(OAuthError) as exc:
        c2.fetch_token(token_url, code=params["code"], code_verifier=generate_token(64))
    assert exc.value.error == "invalid_grant", "a wrong code_verifier"
    # The code may have been spent by the failures above; a fresh one is used
    # twice: the second use is refused.
    c3 = oauth_client(authz, spec, redirect)
    url, _ = c3.create_authorization_url(f"{authz.issuer}/oauth2/authorize", code_verifier=verifier)
    loc, params = location_params(authorize(authz, browser(authz, spec), url, person))
    tok = c3.fetch_token(token_url, authorization_response=loc, code_verifier=verifier)
    with pytest.raises(OAuthError) as exc:
        oauth_client(authz, spec, redirect).fetch_token(token_url, code=params["code"], code_verifier=verifier)
    assert exc.value.error == "invalid_grant"
    # RFC 6749 4.1.2 / RFC 9700 4.5: a reused code revokes what it issued.
    r = bearer(authz, spec, tok["access_token"]).get("/api/v1/account")
    assert r.status_code == 401, "the tokens of a code used twice must be revoked"
    with pytest.raises(OAuthError):
        c3.refresh_token(f"{authz.issuer}/oauth2/token")


def authorize_raw(authz, spec, email, **params):
    """/oauth2/authorize with exactly these query parameters, logged in."""
    url = f"{authz.issuer}/oauth2/authorize?" + urllib.parse.urlencode(params)
    return authorize(authz, browser(authz, spec), url, email)


def refused_without_code(r, redirect_uri):
    """The answer refuses the request: an error here, or an error sent back
    to the (registered) redirect URI; never a code."""
    if r.status_code in (302, 303):
        loc, params = location_params(r)
        assert loc.startswith(redirect_uri), f"redirected to {loc}"
        assert "code" not in params and params.get("error"), loc
        return params["error"]
    assert 400 <= r.status_code < 500, r.status_code
    return None


def challenge(verifier):
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@pytest.mark.parametrize("pkce", [
    {},  # missing
    {"code_challenge_method": "plain"},
    {"code_challenge_method": "S256"},  # a method without a challenge
    {"code_challenge": "x" * 43},  # a challenge without a method (RFC 7636 defaults to plain)
])
def test_pkce_plain_or_missing_is_refused(authz, spec, person, pkce):
    redirect = loopback()
    params = {"response_type": "code", "client_id": CLI, "redirect_uri": redirect, "scope": "account",
              "state": "s" * 16}
    if pkce.get("code_challenge_method") == "plain":
        pkce = dict(pkce, code_challenge=generate_token(64))
    err = refused_without_code(authorize_raw(authz, spec, person, **params, **pkce), redirect)
    assert err in (None, "invalid_request")


def test_loopback_redirect_uri_may_vary_its_port_only(authz, spec, person):
    for port in (41111, 52222):
        redirect = loopback(port)
        verifier = generate_token(64)
        r = authorize_raw(authz, spec, person, response_type="code", client_id=CLI, redirect_uri=redirect,
                          scope="account", state="abcdefgh", code_challenge=challenge(verifier),
                          code_challenge_method="S256")
        loc, params = location_params(r)
        assert loc.startswith(redirect + "?") and params.get("code"), loc


@pytest.mark.parametrize("variant", [
    "http://localhost:43210/callback",
    "http://[::1]:43210/callback",
    "https://127.0.0.1:43210/callback",
    "http://127.0.0.1:43210/callback/",
    "http://127.0.0.1:43210/callbackx",
    "http://127.0.0.1:43210/Callback",
    "http://127.0.0.1:43210/callback/../evil",
    "http://127.0.0.1:43210/callback?next=https://evil.test",
    "http://127.0.0.1:43210/callback#frag",
    "http://127.0.0.1.evil.test/callback",
    "http://127.0.0.1:43210@evil.test/callback",
    "http://evil.test/callback",
    "javascript:alert(1)//127.0.0.1/callback",
    "",
])
def test_redirect_uri_variants_are_refused_without_redirecting(authz, spec, person, variant):
    verifier = generate_token(64)
    r = authorize_raw(authz, spec, person, response_type="code", client_id=CLI, redirect_uri=variant, scope="account",
                      state="abcdefgh", code_challenge=challenge(verifier), code_challenge_method="S256")
    # "": this server wants the redirect URI in every request (RFC 6749
    # 3.1.2.3 allows leaving it out with one registered URI; a loopback one
    # needs its port).
    assert 400 <= r.status_code < 500, f"{variant}: {r.status_code} {r.headers.get('Location')}"


def test_redirect_uri_variants_of_a_web_client(authz, spec, person):
    registered = "https://app.example.test/oauth/cb"
    web = authz.helixctl("clients", "create", "--name", "web-app", "--public", "--redirect-uri", registered,
                         "--grant-type", "authorization_code,refresh_token", "--scope", "account")
    verifier = generate_token(64)
    base = dict(response_type="code", client_id=web["client_id"], scope="account", state="abcdefgh",
                code_challenge=challenge(verifier), code_challenge_method="S256")
    r = authorize_raw(authz, spec, person, redirect_uri=registered, **base)
    loc, params = location_params(r)
    assert loc.startswith(registered + "?") and params.get("code"), loc
    for variant in ["https://app.example.test/oauth/cb/", "https://app.example.test/oauth/cb?x=1",
                    "https://APP.example.test/oauth/cb", "http://app.example.test/oauth/cb",
                    "https://app.example.test:8443/oauth/cb", "https://app.example.test.evil.test/oauth/cb",
                    "https://evil.test/oauth/cb", "https://app.example.test/oauth/cb/../../evil",
                    "https://app.example.test/oauth/cb%2F..%2F..%2Fevil", "https://user@app.example.test/oauth/cb",
                    "https://app.example.test:443/oauth/cb"]:
        r = authorize_raw(authz, spec, person, redirect_uri=variant, **base)
        assert 400 <= r.status_code < 500, f"{variant}: {r.status_code} {r.headers.get('Location')}"


def test_unknown_client_is_not_redirected(authz, spec, person):
    r = authorize_raw(authz, spec, person, response_type="code", client_id="no-such-client",
                      redirect_uri=loopback(), code_challenge=challenge("v" * 43), code_challenge_method="S256")
    assert 400 <= r.status_code < 500, r.status_code


def test_response_type_token_is_refused(authz, spec, person):
    redirect = loopback()
    r = authorize_raw(authz, spec, person, response_type="token", client_id=CLI, redirect_uri=redirect,
                      code_challenge=challenge("v" * 43), code_challenge_method="S256")
    if r.status_code in (302, 303):
        loc = r.headers["Location"]
        assert "access_token" not in loc and "error=" in loc, loc
    else:
        assert 400 <= r.status_code < 500


def test_authorize_without_a_session_goes_to_login(authz, spec):
    verifier = generate_token(64)
    q = urllib.parse.urlencode(dict(response_type="code", client_id=CLI, redirect_uri=loopback(), scope="account",
                                    state="abcdefgh", code_challenge=challenge(verifier),
                                    code_challenge_method="S256"))
    r = browser(authz, spec).get(f"{authz.issuer}/oauth2/authorize?{q}", allow_redirects=False)
    assert r.status_code in (302, 303), r.status_code
    loc = urllib.parse.urljoin(r.url, r.headers["Location"])
    parts = urllib.parse.urlsplit(loc)
    assert loc.startswith(authz.issuer + "/login?"), loc
    ret = urllib.parse.parse_qs(parts.query)["return_to"][0]
    assert ret.startswith("/oauth2/authorize?"), ret


@pytest.mark.parametrize("return_to", ["https://evil.test/", "//evil.test/oauth2/authorize?x", "/\\evil.test",
                                       "/api/v1/account", "javascript:alert(1)", "/oauth2/authorize?x\r\nSet-Cookie:a=b"])
def test_login_return_to_stays_on_the_authorize_endpoint(authz, spec, mailpit, return_to):
    email = verified_user(authz, spec, mailpit, tag="openredirect")
    b = browser(authz, spec)
    url = f"{authz.issuer}/login?" + urllib.parse.urlencode({"return_to": return_to})
    page = b.get(url)
    if page.status_code != 200:
        assert 400 <= page.status_code < 500, page.status_code
        return
    r = submit_login_form(b, url, page.text, email, PASSWORD)
    loc = urllib.parse.urljoin(r.url, r.headers.get("Location", "/"))
    assert loc.startswith(authz.issuer + "/"), f"login sent the browser to {loc}"
    assert "\n" not in loc and "Set-Cookie:a" not in str(r.headers)


def test_revoking_the_refresh_token_logs_out(authz, spec, person):
    c, token, _ = grant(authz, spec, person)
    r = browser(authz, spec).post(f"{authz.issuer}/oauth2/revoke", data={"token": token["refresh_token"], "token_type_hint": "refresh_token", "client_id": CLI})
    assert r.status_code == 200, r.text
    with pytest.raises(OAuthError):
        c.refresh_token(f"{authz.issuer}/oauth2/token")
    assert bearer(authz, spec, token["access_token"]).get("/api/v1/account").status_code == 401


def test_bearer_logout_and_the_account_scope(authz, spec, person):
    _, token, _ = grant(authz, spec, person)
    me = bearer(authz, spec, token["access_token"])
    r = me.patch("/api/v1/account", {"display_name": "Via Bearer"})  # no CSRF token: none is needed
    assert r.status_code == 200, r.text
    r = me.post("/api/v1/logout")
    assert r.status_code == 204, r.text
    assert me.get("/api/v1/account").status_code == 401

    _, narrow, _ = grant(authz, spec, person, scope="models:read")
    r = bearer(authz, spec, narrow["access_token"]).get("/api/v1/account")
    assert r.status_code in (401, 403), "a token without scope account must not use the people's API"


def test_a_machine_token_is_not_a_person(authz, spec):
    cl = authz.helixctl("clients", "create", "--name", "machine", "--scope", "models:read")
    r = browser(authz, spec).post(f"{authz.issuer}/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": cl["client_id"], "client_secret": cl["client_secret"]})
    assert r.status_code == 200, r.text
    assert bearer(authz, spec, r.json()["access_token"]).get("/api/v1/account").status_code == 401


def test_introspection_says_a_logged_out_persons_token_is_inactive(authz, spec, person):
    """Check refuses a person's access token once its session ended (the
    sid rule); introspection (RFC 7662) must agree, or a resource server
    that introspects keeps serving a logged-out person."""
    resource = authz.helixctl("clients", "create", "--name", "resource-server", "--scope", "helix:introspect")
    _, token, _ = grant(authz, spec, person)
    b = browser(authz, spec)

    def active():
        r = b.post(f"{authz.issuer}/oauth2/introspect", data={"token": token["access_token"]},
                   auth=(resource["client_id"], resource["client_secret"]))
        assert r.status_code == 200, r.text
        return r.json()["active"]

    assert active() is True
    assert bearer(authz, spec, token["access_token"]).post("/api/v1/logout").status_code == 204
    assert active() is False
