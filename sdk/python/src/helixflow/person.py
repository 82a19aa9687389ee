"""A person's sign-in: PersonLogin (exported by helixflow.credentials and
helixflow). The authorization-code grant with PKCE S256 over a loopback
redirect (RFC 8252 7.3) by helix-authz's public client `helixctl`, as
`helixctl login` does (internal/cliauth), and the rotating refresh token,
optionally kept in helixctl's credentials file format under its lock."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import html
import http.server
import json
import os
import re
import secrets
import threading
import time
import urllib.parse
import webbrowser
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from .credentials import _post_token, _Token, _TokenSource, env, ssl_context
from .errors import AuthenticationError, ConfigurationError, HelixError
from .retry import RetryPolicy

# helix-authz's first-party public client for people's sign-in, and the
# path of its loopback redirect URI (internal/wire/helixctl.go).
HELIXCTL_CLIENT_ID = "helixctl"
CALLBACK_PATH = "/callback"
DEFAULT_PERSON_SCOPES = ("account", "models:infer", "models:read")

def _pkce() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _parse_time(s: str) -> datetime.datetime:
    # Go writes RFC 3339 with up to nine fractional digits and a Z; Python
    # 3.10's fromisoformat takes neither.
    m = re.match(r"^(.*?T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", s)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {s!r}")
    frac = ((m.group(2) or "") + "000000")[:6]
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.datetime.fromisoformat(f"{m.group(1)}.{frac}{tz}")


def _format_time(t: datetime.datetime) -> str:
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    """helixctl's lock (flock on path + ".lock"): a rotating refresh token
    used by two processes at once looks like a replay and ends the session."""
    try:
        import fcntl
    except ImportError:  # not on Unix: this process's lock only
        yield
        return
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class PersonLogin(_TokenSource):
    """A person's tokens from the authorization-code grant (client
    `helixctl`, PKCE S256, loopback redirect). Sign in with `login()`, or
    load a file `helixctl login` (or login(token_file=...)) wrote with
    `from_file()`. The access token is refreshed with the refresh token
    (which rotates; the new one is saved to token_file, 0600, under the same
    lock helixctl takes)."""

    def __init__(self, issuer: str, refresh_token: str, *, access_token: str = "", expires_at: float = 0.0,
                 scope: str = "", ca_file: str | None = None, token_file: str | None = None,
                 client_id: str = HELIXCTL_CLIENT_ID, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock)
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.scope = scope
        self.ca_file = ca_file
        self.token_file = token_file
        self._refresh = refresh_token
        self._http = httpx.Client(verify=ssl_context(ca_file), timeout=30.0)
        self._retry = RetryPolicy(max_attempts=4, deadline=20.0)
        if access_token:
            left = expires_at - time.time()
            if left > 0:
                self._tok = _Token(access_token, left, clock())

    # -- discovery and the flow

    @staticmethod
    def _metadata(http: httpx.Client, issuer: str) -> dict[str, Any]:
        r = http.get(issuer + "/.well-known/oauth-authorization-server")
        if r.status_code != 200:
            raise ConfigurationError(f"{issuer} has no OAuth metadata (HTTP {r.status_code}): check the issuer "
                                     "(HELIX_ISSUER)")
        md: dict[str, Any] = r.json()
        if md.get("issuer") != issuer:
            raise ConfigurationError(f"the metadata at {issuer} names issuer {md.get('issuer')!r}")
        if not md.get("authorization_endpoint") or "S256" not in (md.get("code_challenge_methods_supported") or []):
            raise ConfigurationError(f"{issuer} does not offer people's sign-in with PKCE S256 "
                                     "(is its people's API on?)")
        for k in ("authorization_endpoint", "token_endpoint"):
            if not str(md.get(k, "")).startswith(issuer + "/"):
                raise ConfigurationError(f"{k} {md.get(k)!r} is not under the issuer {issuer}")
        return md

    @classmethod
    def login(cls, issuer: str | None = None, *, ca_file: str | None = None, scopes: list[str] | None = None,
              open_browser: Callable[[str], object] | None = None, token_file: str | None = None,
              timeout: float = 300.0, prompt: Callable[[str], None] | None = print) -> PersonLogin:
        """Signs a person in: listens on 127.0.0.1 (a port the system picks),
        sends the browser to the authorization endpoint (open_browser(url);
        webbrowser.open when None), waits up to timeout seconds for the one
        callback with our state, and exchanges the code. issuer defaults to
        HELIX_ISSUER, ca_file to HELIX_CA_FILE."""
        iss = env("HELIX_ISSUER", issuer, "the issuer").rstrip("/")
        ca = ca_file if ca_file is not None else os.environ.get("HELIX_CA_FILE") or None
        http = httpx.Client(verify=ssl_context(ca), timeout=30.0)
        try:
            md = cls._metadata(http, iss)
            verifier, challenge = _pkce()
            state = secrets.token_urlsafe(32)
            with _Callback(state) as cb:
                redirect = f"http://127.0.0.1:{cb.port}{CALLBACK_PATH}"
                url = md["authorization_endpoint"] + "?" + urllib.parse.urlencode({
                    "response_type": "code", "client_id": HELIXCTL_CLIENT_ID, "redirect_uri": redirect,
                    "scope": " ".join(scopes or DEFAULT_PERSON_SCOPES), "state": state,
                    "code_challenge": challenge, "code_challenge_method": "S256"})
                if prompt is not None:
                    prompt(f"Sign in to {iss} in your browser. If it does not open, visit:\n\n  {url}\n")
                (open_browser or webbrowser.open)(url)
                code = cb.wait(timeout)
            started = time.time()
            body = _post_token(http, md["token_endpoint"], {
                "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
                "client_id": HELIXCTL_CLIENT_ID, "code_verifier": verifier}, None,
                RetryPolicy(max_attempts=3, deadline=20.0), "the sign-in")
        finally:
            http.close()
        if not body.get("refresh_token"):
            raise AuthenticationError("the token endpoint answered the sign-in without a refresh token")
        p = cls(iss, str(body["refresh_token"]), access_token=str(body["access_token"]),
                expires_at=started + float(body.get("expires_in") or 60), scope=str(body.get("scope", "")),
                ca_file=ca, token_file=token_file)
        p.fetches = 1
        p._save()
        return p

    @classmethod
    def from_file(cls, path: str | None = None) -> PersonLogin:
        """The credentials file of `helixctl login` (default: HELIX_CREDENTIALS,
        else helixflow/credentials.json in the config folder)."""
        path = path or os.environ.get("HELIX_CREDENTIALS") or os.path.join(
            os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "helixflow", "credentials.json")
        try:
            with open(path) as f:
                c = json.load(f)
        except FileNotFoundError:
            raise AuthenticationError(f"not logged in: {path} does not exist (run helixctl login, "
                                      "or PersonLogin.login(token_file=...))") from None
        if not isinstance(c, dict) or not c.get("issuer") or not c.get("refresh_token"):
            raise ConfigurationError(f"{path} is not a credentials file; delete it and log in again")
        exp = _parse_time(c["expires_at"]).timestamp() if c.get("expires_at") else 0.0
        return cls(c["issuer"], c["refresh_token"], access_token=c.get("access_token", ""), expires_at=exp,
                   scope=c.get("scope", ""), ca_file=c.get("ca_file") or None, token_file=path,
                   client_id=c.get("client_id") or HELIXCTL_CLIENT_ID)

    # -- refresh

    def _fetch(self) -> tuple[str, float]:
        md = self._metadata(self._http, self.issuer)
        with contextlib.ExitStack() as stack:
            if self.token_file:
                stack.enter_context(_file_lock(self.token_file))
                self._reload()  # another process may have refreshed meanwhile
                t = self._tok
                if t is not None and self._fresh(t) and t.value != self._rejected:
                    return t.value, t.expires_at - self._clock()
            started = time.time()
            try:
                body = _post_token(self._http, md["token_endpoint"], {
                    "grant_type": "refresh_token", "refresh_token": self._refresh, "client_id": self.client_id},
                    None, self._retry, "the refresh token")
            except AuthenticationError as e:
                raise AuthenticationError(f"{e.message()}: the sign-in has ended (logout, a password change, or the "
                                          "refresh token used elsewhere); sign in again", e.status()) from None
            self._refresh = str(body.get("refresh_token") or self._refresh)
            self.scope = str(body.get("scope", self.scope))
            lifetime = float(body.get("expires_in") or 60)
            self._save(str(body["access_token"]), started + lifetime)
            return str(body["access_token"]), lifetime

    def _reload(self) -> None:
        if not self.token_file or not os.path.exists(self.token_file):
            return
        with open(self.token_file) as f:
            c = json.load(f)
        if c.get("refresh_token"):
            self._refresh = c["refresh_token"]
        if c.get("access_token") and c.get("expires_at"):
            left = _parse_time(c["expires_at"]).timestamp() - time.time()
            if left > 0 and c["access_token"] != self._rejected:
                self._tok = _Token(c["access_token"], left, self._clock())

    def _save(self, access: str | None = None, expires_wall: float | None = None) -> None:
        if not self.token_file:
            return
        if access is None:
            t = self._tok
            access = t.value if t else ""
            expires_wall = time.time() + (t.expires_at - self._clock() if t else 0)
        data = {"issuer": self.issuer, "client_id": self.client_id, "access_token": access,
                "refresh_token": self._refresh,
                "expires_at": _format_time(datetime.datetime.fromtimestamp(expires_wall or 0, datetime.timezone.utc)),
                "scope": self.scope}
        if self.ca_file:
            data["ca_file"] = self.ca_file
        d = os.path.dirname(os.path.abspath(self.token_file))
        os.makedirs(d, mode=0o700, exist_ok=True)
        tmp = f"{self.token_file}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, self.token_file)

    def logout(self) -> None:
        """Revokes the refresh token (the session and its access tokens end)
        and deletes token_file."""
        md = self._metadata(self._http, self.issuer)
        r = self._http.post(md["revocation_endpoint"], data={
            "token": self._refresh, "token_type_hint": "refresh_token", "client_id": self.client_id})
        if r.status_code != 200:
            raise HelixError(f"logout: revocation answered HTTP {r.status_code}; run logout again", str(r.status_code))
        self._tok = None
        if self.token_file:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.token_file)

    def close(self) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"PersonLogin(issuer={self.issuer!r}, scope={self.scope!r})"


class _Callback:
    """The loopback listener of the sign-in: one GET /callback whose state
    matches ends the wait; anything else is answered 400 and ignored."""

    def __init__(self, state: str) -> None:
        self.state = state
        self.result: tuple[str, str] | None = None  # (code, error)
        self.done = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                u = urllib.parse.urlsplit(self.path)
                q = {k: v[0] for k, v in urllib.parse.parse_qs(u.query).items()}
                if u.path != CALLBACK_PATH or not secrets.compare_digest(q.get("state", ""), outer.state):
                    self._answer(400, "This is not the sign-in the HelixFlow SDK is waiting for.")
                    return
                err = q.get("error", "")
                if err:
                    err = f"{err}: {q.get('error_description', '')}"
                elif not q.get("code"):
                    err = "the callback carries no code"
                self._answer(200 if not err else 400, "Sign-in failed: " + err if err
                             else "You are signed in. You can close this tab.")
                if not outer.done.is_set():
                    outer.result = (q.get("code", ""), err)
                    outer.done.set()

            def _answer(self, status: int, msg: str) -> None:
                body = f"<!doctype html><title>HelixFlow</title><p>{html.escape(msg)}</p>\n".encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Security-Policy", "default-src 'none'")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Callback:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, timeout: float) -> str:
        if not self.done.wait(timeout):
            raise AuthenticationError(f"no sign-in arrived within {timeout:.0f} s; run the login again")
        assert self.result is not None
        code, err = self.result
        if err:
            raise AuthenticationError(f"sign-in refused: {err}")
        return code
