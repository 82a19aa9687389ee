"""Helpers of the Python SDK's tests (tests/sdk/test_sdk_python*.py): the
environment a user of a client has, the sample model's inputs, and a person
who signs up, verifies through mailpit and signs in (the browser's part of
`PersonLogin.login`, driven with httpx against helix-authz's API)."""

import ipaddress
import random
import ssl
import uuid

import httpx
import numpy as np

from helixstack import mail_token

PASSWORD = "violet-Harbor-93-lantern"


def client_env(stack, client):
    """stack.env (what `source .helix/local.env` gives) with client's id
    and secret instead of the demo client's."""
    return dict(stack.env, HELIX_CLIENT_ID=client.id, HELIX_CLIENT_SECRET=client.secret)


def simple_inputs(mod, i=0):
    """INPUT0 = i..i+15, INPUT1 = ones, for module mod (any of the four)."""
    a = mod.InferInput("INPUT0", [1, 16], "INT32")
    a.set_data_from_numpy((np.arange(16, dtype=np.int32) + i).reshape(1, 16))
    b = mod.InferInput("INPUT1", [1, 16], "INT32")
    b.set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
    return [a, b]


def check_simple(result, i=0):
    out = result.as_numpy("OUTPUT0")
    assert out.tolist() == [[i + k + 1 for k in range(16)]], out


def source_address():
    """A source address of its own for X-Forwarded-For (helix-authz trusts
    loopback as its proxy), so the people API's per-source throttles of
    other suites do not reach this one. From 198.18.0.0/15 (RFC 2544)."""
    return str(ipaddress.ip_address(int(ipaddress.ip_address("198.18.0.0")) + random.randrange(1, 1 << 17)))


class Person:
    """A new verified account on the stack's helix-authz, signed in (its
    browser session cookie), whose `browser(url)` plays the browser of a
    sign-in: it opens the authorization URL with the cookie and follows
    helix-authz's redirect to the SDK's loopback callback."""

    def __init__(self, stack):
        self.stack = stack
        self.issuer = stack.info["issuer"]
        self.email = f"sdk-{uuid.uuid4().hex[:12]}@example.test"
        self.http = httpx.Client(verify=ssl.create_default_context(cafile=stack.ca_file), timeout=30,
                                 headers={"X-Forwarded-For": source_address()})
        self.cookie = None
        self.visits = []

    def signup_and_verify(self):
        r = self.http.post(self.issuer + "/api/v1/signup",
                           json={"email": self.email, "password": PASSWORD, "display_name": "Ada SDK"})
        assert r.status_code == 202, r.text
        token = mail_token(self.stack.info["mailpit_url"], self.email, "/verify-email")
        r = self.http.post(self.issuer + "/api/v1/verify-email", json={"token": token})
        assert r.status_code == 200 and r.json()["email_verified"] is True, r.text
        r = self.http.post(self.issuer + "/api/v1/login", json={"email": self.email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        self.cookie = r.cookies.get("__Host-helix_session")
        assert self.cookie, r.headers

    def browser(self, url):
        """What the SDK calls instead of opening a browser."""
        self.visits.append(url)
        r = self.http.get(url, headers={"Cookie": f"__Host-helix_session={self.cookie}"})
        assert r.status_code in (302, 303), f"{r.status_code} {r.text[:300]}"
        loc = r.headers["Location"]
        assert loc.startswith("http://127.0.0.1:") and "/callback?" in loc, loc
        cb = httpx.get(loc, timeout=10)  # the SDK's loopback listener
        assert cb.status_code == 200, cb.text

