"""A person's account from sign-up to erasure, through the JSON API, with
the links read from the mails mailpit received."""

import json

from people import (PASSWORD, Client, error_of, has_link, link_token, logged_in, mail_link, new_email,
                    refused_login, signup, verified_user)

NEW_PASSWORD = "quartz-Meadow-58-falcon"


def test_signup_verify_login_profile_password_logout(authz, spec, mailpit):
    c = Client(authz, spec)
    email, token = signup(c, mailpit)

    # Not verified yet: the right password says so.
    r = c.post("/api/v1/login", {"email": email, "password": PASSWORD})
    assert r.status_code == 403 and error_of(r) == "email_not_verified", r.text

    r = c.post("/api/v1/verify-email", {"token": token})
    assert r.status_code == 200, r.text
    user = r.json()
    assert user["email"] == email and user["email_verified"] is True
    assert user["display_name"] == "Ada Test" and user["platform_admin"] is False

    c = Client(authz, spec)
    r = c.login_answer(email.upper(), PASSWORD)  # emails are case-blind
    assert r.status_code == 200, r.text
    body = r.json()
    c.csrf = body["csrf_token"]
    assert body["user"]["id"] == user["id"]
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("__Host-helix_session="), cookie
    attrs = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"path", "secure", "httponly", "samesite"} <= attrs, cookie
    assert "samesite=lax" in cookie.lower() and "path=/" in cookie.lower() and "domain" not in attrs

    r = c.get("/api/v1/account")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == user["id"]
    assert r.headers["X-CSRF-Token"] == c.csrf

    r = c.patch("/api/v1/account", {"display_name": "Ada L.", "organization": "Analytical Engines",
                                    "preferences": {"theme": "dark", "digits": 4}})
    assert r.status_code == 200, r.text
    assert (r.json()["display_name"], r.json()["organization"]) == ("Ada L.", "Analytical Engines")
    assert r.json()["preferences"] == {"theme": "dark", "digits": 4}
    assert c.get("/api/v1/account").json()["display_name"] == "Ada L."

    # A password change ends every other session, keeps this one.
    other = Client(authz, spec)
    other.login(email)
    r = c.post("/api/v1/account/password", {"current_password": "wrong-password-1", "new_password": NEW_PASSWORD})
    assert r.status_code in (400, 401, 403), r.text
    r = c.post("/api/v1/account/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}, patient=True)
    assert r.status_code == 204, r.text
    assert other.get("/api/v1/account").status_code == 401
    assert c.get("/api/v1/account").status_code == 200
    assert refused_login(authz, spec, email, PASSWORD).status_code == 401
    Client(authz, spec).login(email, NEW_PASSWORD)

    r = c.post("/api/v1/logout")
    assert r.status_code == 204, r.text
    assert "__Host-helix_session=" in r.headers.get("Set-Cookie", "")
    assert c.get("/api/v1/account").status_code == 401


def test_password_rules_name_the_problem(authz, spec, mailpit):
    c = Client(authz, spec)
    for bad in ["short1", "x" * 65, "password", "123456789"]:
        r = c.post("/api/v1/signup", {"email": new_email(), "password": bad})
        assert r.status_code == 400 and error_of(r) == "invalid_request", (bad, r.text)
        assert "password" in r.json()["error_description"].lower()
    email = new_email()
    r = c.post("/api/v1/signup", {"email": email, "password": email})
    assert r.status_code == 400 and "password" in r.json()["error_description"].lower(), r.text
    for bad in ["not-an-email", "", "a@", "@b.test", "a" * 250 + "@b.test"]:
        r = c.post("/api/v1/signup", {"email": bad, "password": PASSWORD})
        assert r.status_code == 400 and "email" in r.json()["error_description"].lower(), (bad, r.text)


def test_password_reset(authz, authz2, spec, mailpit):
    email = verified_user(authz, spec, mailpit)
    a = Client(authz, spec)
    a.login(email)
    c = Client(authz2, spec)  # a replica that has not mailed this address within the minute
    r = c.post("/api/v1/password-reset", {"email": email})
    assert r.status_code == 202, r.text
    token = link_token(mail_link(mailpit.wait(email, has_link("/reset-password")), "/reset-password"))

    r = c.post("/api/v1/password-reset/confirm", {"token": token, "new_password": "short"})
    assert r.status_code == 400 and "password" in r.json()["error_description"].lower(), r.text
    r = c.post("/api/v1/password-reset/confirm", {"token": token, "new_password": NEW_PASSWORD})
    assert r.status_code == 204, r.text
    assert a.get("/api/v1/account").status_code == 401, "a reset must end every session"
    assert refused_login(authz, spec, email, PASSWORD).status_code == 401
    Client(authz, spec).login(email, NEW_PASSWORD)


def test_email_change(authz, spec, mailpit):
    c = logged_in(authz, spec, mailpit)
    old = c.email
    before = {m["ID"] for m in mailpit.messages(old)}
    new = new_email("moved")
    r = c.post("/api/v1/account/email", {"new_email": new, "password": "not-the-password"})
    assert r.status_code in (400, 401, 403), r.text
    r = c.post("/api/v1/account/email", {"new_email": new, "password": PASSWORD}, patient=True)
    assert r.status_code == 202, r.text
    link = mail_link(mailpit.wait(new, has_link("/verify-email")), "/verify-email")
    notice = mailpit.wait(old, skip=before)
    assert "token=" not in notice.get("Text", ""), "the notice to the old address must not carry the link"
    assert c.get("/api/v1/account").json()["email"] == old, "the address changes only when the link is followed"

    r = Client(authz, spec).post("/api/v1/verify-email", {"token": link_token(link)})
    assert r.status_code == 200, r.text
    assert r.json()["email"] == new
    assert c.get("/api/v1/account").json()["email"] == new
    assert refused_login(authz, spec, old, PASSWORD).status_code == 401
    Client(authz, spec).login(new)


def test_email_change_to_a_taken_address_says_nothing_more(authz, spec, mailpit):
    c = logged_in(authz, spec, mailpit)
    taken = verified_user(authz, spec, mailpit)
    r = c.post("/api/v1/account/email", {"new_email": taken, "password": PASSWORD})
    free = c.post("/api/v1/account/email", {"new_email": new_email(), "password": PASSWORD})
    assert (r.status_code, r.json()) == (free.status_code, free.json())


def test_sessions_list_and_end(authz, spec, mailpit):
    a = logged_in(authz, spec, mailpit)
    b = Client(authz, spec)
    b.login(a.email)
    r = a.get("/api/v1/account/sessions")
    assert r.status_code == 200, r.text
    sessions = r.json()["sessions"]
    assert len(sessions) == 2 and all(s["kind"] == "browser" for s in sessions)
    current = [s for s in sessions if s["current"]]
    assert len(current) == 1
    theirs = next(s for s in sessions if not s["current"])
    assert theirs["source"] == b.source, "the source is the X-Forwarded-For of a trusted proxy"

    stranger = logged_in(authz, spec, mailpit)
    r = stranger.delete(f"/api/v1/account/sessions/{theirs['id']}")
    assert r.status_code == 404, "another user's session must be unknown to me"
    assert b.get("/api/v1/account").status_code == 200

    r = a.delete(f"/api/v1/account/sessions/{theirs['id']}")
    assert r.status_code == 204, r.text
    assert b.get("/api/v1/account").status_code == 401
    assert [s["id"] for s in a.get("/api/v1/account/sessions").json()["sessions"]] == [current[0]["id"]]
    r = a.delete("/api/v1/account/sessions/00000000-0000-4000-8000-000000000000")
    assert r.status_code == 404, r.text
    r = a.delete("/api/v1/account/sessions/not-a-uuid")
    assert r.status_code in (400, 404), r.text


def test_unauthenticated_calls_are_401(authz, spec):
    c = Client(authz, spec)
    for method, path in [("GET", "/api/v1/account"), ("PATCH", "/api/v1/account"), ("GET", "/api/v1/account/sessions"),
                         ("GET", "/api/v1/account/export"), ("POST", "/api/v1/logout"), ("GET", "/api/v1/orgs")]:
        r = c.call(method, path, json={} if method != "GET" else None)
        assert r.status_code == 401 and error_of(r) == "unauthorized", (method, path, r.text)
    r = c.get("/api/v1/account", headers={"Authorization": "Bearer not.a.token"})
    assert r.status_code == 401, r.text
    r = c.get("/api/v1/account", cookies={"__Host-helix_session": "A" * 43})
    assert r.status_code == 401, r.text


def test_gdpr_export_and_erase(authz, spec, mailpit):
    c = logged_in(authz, spec, mailpit, tag="erase")
    c.patch("/api/v1/account", {"display_name": "Erin Erasable", "organization": "Gone Ltd"})
    r = c.get("/api/v1/account/export")
    assert r.status_code == 200, r.text
    text = json.dumps(r.json())
    for held in (c.email, "Erin Erasable", "Gone Ltd", c.user["id"]):
        assert held in text, f"the export misses {held}"
    assert "password_hash" not in text and "$argon2id$" not in text, "the export must not carry the password hash"
    assert r.headers.get("Cache-Control") == "no-store"

    other = Client(authz, spec)
    other.login(c.email)
    r = c.delete("/api/v1/account", {"password": "not-the-password"})
    assert r.status_code in (400, 401, 403), r.text
    assert c.get("/api/v1/account").status_code == 200
    r = c.delete("/api/v1/account", {"password": PASSWORD}, patient=True)
    assert r.status_code == 204, r.text
    assert c.get("/api/v1/account").status_code == 401
    assert other.get("/api/v1/account").status_code == 401, "erasure ends every session"
    r = refused_login(authz, spec, c.email, PASSWORD)
    assert r.status_code == 401, r.text
