"""The Python SDK without the stack: the retry policy and the gRPC retry
layer with fake calls, ClientCredentials against a fake token endpoint
(httpx.MockTransport) with a fake clock, the one-line-change promise (every
name of tritonclient's modules is there), the dependency ranges against the
repository's pins, and mypy --strict on the package."""

import asyncio
import pathlib
import re
import subprocess
import sys
import threading
import time
import tomllib

import httpx
import pytest
from packaging.requirements import Requirement

import helixflow.triton.grpc as hgrpc
import helixflow.triton.grpc.aio as hagrpc
import helixflow.triton.http as hhttp
import helixflow.triton.http.aio as hahttp
from helixflow import AuthenticationError, ClientCredentials, PermissionDeniedError, RateLimitedError, RetryPolicy
from helixflow.retry import RATE_LIMITED, UNAVAILABLE, grpc_kind, http_kind, reset_seconds

ROOT = pathlib.Path(__file__).resolve().parents[2]
SDK = ROOT / "sdk" / "python"


# -- the policy


def test_only_429_and_503_and_their_grpc_codes_are_retried():
    assert http_kind(429) == RATE_LIMITED and http_kind(503) == UNAVAILABLE
    for s in (200, 400, 401, 403, 404, 500, 502, 504):
        assert http_kind(s) is None, s
    assert grpc_kind("RESOURCE_EXHAUSTED") == RATE_LIMITED and grpc_kind("UNAVAILABLE") == UNAVAILABLE
    for c in ("INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND", "INTERNAL", "DEADLINE_EXCEEDED"):
        assert grpc_kind(c) is None, c


def test_full_jitter_is_bounded_and_the_reset_is_a_floor():
    top = RetryPolicy(base_delay=0.1, max_delay=2.0, rand=lambda a, b: b)
    assert [round(top.backoff(n), 3) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]
    bottom = RetryPolicy(rand=lambda a, b: a)
    assert bottom.backoff(5) == 0.0  # full jitter reaches 0
    assert bottom.backoff(0, reset=1.0) == 1.0  # never less than x-ratelimit-reset
    assert top.backoff(0, reset=3.0) == pytest.approx(3.1)
    assert reset_seconds({"x-ratelimit-reset": "2"}) == 2.0
    assert reset_seconds({"retry-after": "1"}) == 1.0
    assert reset_seconds({"x-ratelimit-reset": "soon"}) is None and reset_seconds({}) is None


def test_attempts_and_deadline_are_bounded():
    a = RetryPolicy(max_attempts=3, rand=lambda a, b: b).start()
    assert a.next_wait() is not None and a.next_wait() is not None and a.next_wait() is None
    now = [0.0]
    p = RetryPolicy(max_attempts=100, deadline=5.0, rand=lambda a, b: b, clock=lambda: now[0])
    a = p.start()
    assert a.next_wait(reset=4.0) is not None
    now[0] = 4.5
    assert a.next_wait(reset=1.0) is None  # would end past the deadline
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


# -- the gRPC layer with fake calls


class FakeRpcError(hgrpc._grpc.RpcError):
    def __init__(self, code, details="", trailers=()):
        self._code, self._details, self._trailers = code, details, trailers

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailers


class FakeCreds:
    def __init__(self):
        self.n, self.invalidated = 0, 0

    def headers(self):
        self.n += 1
        return {"authorization": f"Bearer t{self.n}"}

    cached_headers = headers

    async def atoken(self):
        return "t"

    def invalidate(self, token=None):
        self.invalidated += 1


class Req:
    model_name = "simple"


def unary(errors, creds=None, policy=None, name="ModelInfer"):
    calls = []

    def call(request, metadata=None, timeout=None):
        calls.append(list(metadata))
        if errors:
            raise errors.pop(0)
        return "ok"

    slept = []
    u = hgrpc._Unary(name, call, creds, policy or RetryPolicy(rand=lambda a, b: 0.0))
    return u, calls, slept


def test_grpc_rate_limited_waits_the_reset_then_succeeds(monkeypatch):
    slept = []
    monkeypatch.setattr("helixflow.retry.Attempts.sleep", lambda self, s: slept.append(s))
    code = hgrpc._grpc.StatusCode
    errs = [FakeRpcError(code.RESOURCE_EXHAUSTED, "rate limit exceeded", (("x-ratelimit-reset", "1"),)),
            FakeRpcError(code.UNAVAILABLE, "draining")]
    u, calls, _ = unary(errs, FakeCreds())
    assert u(Req(), metadata=[("authorization", "Bearer t0")]) == "ok"
    assert len(calls) == 3 and slept == [1.0, 0.0]
    assert calls[1][-1] == ("authorization", "Bearer t1")  # the credential read again for each attempt


def test_grpc_other_errors_are_not_retried():
    code = hgrpc._grpc.StatusCode
    for c in (code.INVALID_ARGUMENT, code.NOT_FOUND, code.INTERNAL):
        u, calls, _ = unary([FakeRpcError(c, "no")], FakeCreds())
        with pytest.raises(FakeRpcError):  # tritonclient turns it into its InferenceServerException
            u(Req(), metadata=[])
        assert len(calls) == 1


def test_grpc_permission_denied_names_the_scope():
    u, calls, _ = unary([FakeRpcError(hgrpc._grpc.StatusCode.PERMISSION_DENIED, "insufficient_scope")], FakeCreds())
    with pytest.raises(PermissionDeniedError) as e:
        u(Req(), metadata=[])
    assert len(calls) == 1 and e.value.scope == "models:infer or models:simple:infer"
    assert "insufficient_scope" in str(e.value) and e.value.status() == "StatusCode.PERMISSION_DENIED"


def test_grpc_401_gets_one_fresh_token_then_a_clear_error():
    creds = FakeCreds()
    err = FakeRpcError(hgrpc._grpc.StatusCode.UNAUTHENTICATED, "invalid_token")
    u, calls, _ = unary([err, err, err], creds)
    with pytest.raises(AuthenticationError, match="HELIX_CLIENT_ID"):
        u(Req(), metadata=[])
    assert len(calls) == 2 and creds.invalidated == 1


def test_grpc_rate_limited_until_the_attempts_run_out(monkeypatch):
    monkeypatch.setattr("helixflow.retry.Attempts.sleep", lambda self, s: None)
    err = FakeRpcError(hgrpc._grpc.StatusCode.RESOURCE_EXHAUSTED, "rate limit exceeded",
                       (("x-ratelimit-reset", "1"), ("x-ratelimit-limit", "5, 5;w=1")))
    u, calls, _ = unary([err] * 10, FakeCreds(), RetryPolicy(max_attempts=4, rand=lambda a, b: 0.0))
    with pytest.raises(RateLimitedError) as e:
        u(Req(), metadata=[])
    assert len(calls) == 4 and e.value.reset == 1.0 and e.value.limit == "5, 5;w=1"


def test_grpc_aio_retries_too(monkeypatch):
    async def nosleep(self, s):
        pass

    monkeypatch.setattr("helixflow.retry.Attempts.asleep", nosleep)
    errs = [FakeRpcError(hgrpc._grpc.StatusCode.UNAVAILABLE, "x")]
    calls = []

    async def call(request, metadata=None):
        calls.append(metadata)
        if errs:
            raise errs.pop()
        return "ok"

    u = hagrpc._Unary("ModelMetadata", call, FakeCreds(), RetryPolicy())
    assert asyncio.run(u(Req(), metadata=[])) == "ok" and len(calls) == 2


# -- ClientCredentials against a fake token endpoint


class TokenEndpoint:
    def __init__(self, lifetime=20, answers=None, delay=0.0):
        self.lifetime, self.answers, self.delay = lifetime, list(answers or []), delay
        self.requests = 0
        self.lock = threading.Lock()

    def __call__(self, request):
        with self.lock:
            self.requests += 1
            n = self.requests
        if self.delay:
            time.sleep(self.delay)
        if self.answers:
            status, body, headers = self.answers.pop(0)
            return httpx.Response(status, json=body, headers=headers)
        assert request.headers["authorization"].startswith("Basic ")
        assert b"grant_type=client_credentials" in request.content
        return httpx.Response(200, json={"access_token": f"tok{n}", "expires_in": self.lifetime,
                                         "token_type": "bearer"})


def creds_with(endpoint, clock=time.monotonic, **kw):
    return ClientCredentials("cid", "secret", "https://authz.test/oauth2/token", clock=clock,
                             http=httpx.Client(transport=httpx.MockTransport(endpoint)), **kw)


def test_refreshed_before_expiry():
    now = [100.0]
    ep = TokenEndpoint(lifetime=30)
    c = creds_with(ep, clock=lambda: now[0])
    assert c.token() == "tok1"
    now[0] += 19  # 11 s left of 30: more than a third, still used
    assert c.token() == "tok1"
    now[0] += 2  # 9 s left: under a third, fetched again before it expires
    assert c.token() == "tok2" and ep.requests == 2
    c.invalidate("tok1")  # a stale 401 does not throw away the newer token
    assert c.token() == "tok2"
    c.invalidate("tok2")
    assert c.token() == "tok3"


def test_one_fetch_in_flight_for_threads_and_coroutines():
    ep = TokenEndpoint(delay=0.2)
    c = creds_with(ep)
    got = []
    threads = [threading.Thread(target=lambda: got.append(c.token())) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == ["tok1"] * 16 and ep.requests == 1

    c2 = creds_with(ep2 := TokenEndpoint(delay=0.2))

    async def many():
        return await asyncio.gather(*(c2.atoken() for _ in range(50)))

    assert set(asyncio.run(many())) == {"tok1"} and ep2.requests == 1


def test_wrong_secret_is_not_retried():
    ep = TokenEndpoint(answers=[(401, {"error": "invalid_client", "error_description": "Client authentication failed"},
                                 {})] * 5)
    with pytest.raises(AuthenticationError) as e:
        creds_with(ep).token()
    assert ep.requests == 1
    assert "invalid_client" in str(e.value) and "HELIX_CLIENT_SECRET" in str(e.value)


def test_token_endpoint_throttle_is_waited_out(monkeypatch):
    slept = []
    monkeypatch.setattr("helixflow.retry.Attempts.sleep", lambda self, s: slept.append(s))
    ep = TokenEndpoint(answers=[(429, {"error": "temporarily_unavailable"}, {"retry-after": "1"})])
    assert creds_with(ep).token() == "tok2" and ep.requests == 2 and slept and slept[0] >= 1.0


# -- packaging


def test_every_name_of_tritonclient_is_there():
    import tritonclient.grpc
    import tritonclient.grpc.aio
    import tritonclient.http
    import tritonclient.http.aio
    for theirs, ours in ((tritonclient.grpc, hgrpc), (tritonclient.http, hhttp), (tritonclient.grpc.aio, hagrpc),
                         (tritonclient.http.aio, hahttp)):
        missing = [n for n in dir(theirs) if not n.startswith("_") and not hasattr(ours, n)]
        assert not missing, (ours.__name__, missing)
        assert issubclass(ours.InferenceServerClient, theirs.InferenceServerClient)
    assert hgrpc.aio is hagrpc and hhttp.aio is hahttp  # the attribute is ours, not tritonclient's
    assert hgrpc.service_pb2 is tritonclient.grpc.service_pb2


def test_dependency_ranges_hold_the_pins():
    project = tomllib.loads((SDK / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.10"
    reqs = [Requirement(d) for d in project["dependencies"]]
    pins = {}
    for f in ("requirements-run.txt", "requirements.txt"):
        for line in (ROOT / "scripts" / f).read_text().splitlines():
            m = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", line)
            if m:
                pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    assert {r.name for r in reqs} == {"httpx", "tritonclient", "websockets"}
    for r in reqs:
        assert r.specifier.contains(pins[r.name]), f"{r} does not allow the pinned {r.name}=={pins[r.name]}"
    assert (SDK / "src" / "helixflow" / "py.typed").exists()


def test_mypy_strict():
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "src/helixflow"], cwd=SDK, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_scope_the_gateway_names_wins():
    from helixflow.triton._common import refusal
    from helixflow.retry import RetryPolicy as P
    e = refusal("403", None, "inference on model 'm'", "models:infer or models:m:infer", "insufficient_scope",
                {"www-authenticate": 'Bearer error="insufficient_scope", scope="models:m:infer"'}, P().start())
    assert e.scope == "models:m:infer" and "needs scope models:m:infer" in str(e)
    e = refusal("403", None, "x", "models:read", "insufficient_scope", {}, P().start())
    assert e.scope == "models:read"
