"""The Python SDK (sdk/python, package helixflow) against the stack the
Python suites share (tests/helixstack.py; tokens live TOKEN_LIFETIME = 20 s).

The long job (more than two token lifetimes, over gRPC, HTTP, both asyncio
clients and a WebSocket, with one ClientCredentials shared by all) runs in
the background from the first test to the last, so the other tests run
while it does and the file takes about as long as the job itself."""

import asyncio
import os
import threading
import time

import pytest

import helixflow.triton.grpc as grpcclient
import helixflow.triton.grpc.aio as agrpcclient
import helixflow.triton.http as httpclient
import helixflow.triton.http.aio as ahttpclient
from helixflow import (APIError, APIKey, AsyncClient, AuthenticationError, Client, ClientCredentials,
                       ConfigurationError, PermissionDeniedError, PersonLogin, RetryPolicy)
from helixflow.ws import connect, simple_request
from helixstack import TOKEN_LIFETIME
from sdk_python_util import Person, check_simple, simple_inputs

JOB_SECONDS = 2 * TOKEN_LIFETIME + 5  # more than two token lifetimes
PACE = 0.05  # seconds between one stream's requests: ~100 requests/s in all


class CountingCredentials(ClientCredentials):
    """Counts the 401s the SDK saw (each makes it invalidate the token)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.invalidations = 0

    def invalidate(self, token=None):
        self.invalidations += 1
        super().invalidate(token)


@pytest.fixture(autouse=True)
def helix_env(helix_stack, monkeypatch):
    """The environment of a user who sourced .helix/local.env."""
    for k in [k for k in os.environ if k.startswith("HELIX_")]:
        monkeypatch.delenv(k)
    for k, v in helix_stack.env.items():
        monkeypatch.setenv(k, v)


class LongJob:
    def __init__(self, stack):
        self.client = stack.client(f"sdk-py-long-{int(time.time() * 1000)}", "models:infer,models:read")
        self.creds = CountingCredentials(self.client.id, self.client.secret, stack.token_url, ca_file=stack.ca_file)
        self.stack = stack
        self.counts = {}
        self.errors = []
        self.ws_events = []
        self.ws_connects = 0
        self.started = time.monotonic()
        self.threads = [threading.Thread(target=self._guard, args=(f,), daemon=True)
                        for f in (self._grpc, self._http, self._aio)]
        for t in self.threads:
            t.start()

    def _guard(self, f):
        try:
            f()
        except BaseException as e:  # noqa: BLE001 (reported by the last test)
            self.errors.append(f"{f.__name__}: {e!r}")

    def _running(self):
        return time.monotonic() - self.started < JOB_SECONDS

    def _grpc(self):
        with grpcclient.InferenceServerClient(self.stack.gateway, credentials=self.creds,
                                              ca_file=self.stack.ca_file) as c:
            i = 0
            while self._running():
                check_simple(c.infer("simple", simple_inputs(grpcclient, i)), i)
                i += 1
                time.sleep(PACE)
            self.counts["grpc"] = i

    def _http(self):
        with httpclient.InferenceServerClient(self.stack.https_url, credentials=self.creds,
                                              ca_file=self.stack.ca_file) as c:
            i = 0
            while self._running():
                check_simple(c.infer("simple", simple_inputs(httpclient, i)), i)
                i += 1
                time.sleep(PACE)
            self.counts["http"] = i

    def _aio(self):
        async def agrpc():
            async with agrpcclient.InferenceServerClient(self.stack.gateway, credentials=self.creds,
                                                         ca_file=self.stack.ca_file) as c:
                i = 0
                while self._running():
                    check_simple(await c.infer("simple", simple_inputs(agrpcclient, i)), i)
                    i += 1
                    await asyncio.sleep(PACE)
                self.counts["grpc.aio"] = i

        async def ahttp():
            async with ahttpclient.InferenceServerClient(self.stack.https_url, credentials=self.creds,
                                                         ca_file=self.stack.ca_file) as c:
                i = 0
                while self._running():
                    check_simple(await c.infer("simple", simple_inputs(ahttpclient, i)), i)
                    i += 1
                    await asyncio.sleep(PACE)
                self.counts["http.aio"] = i

        async def ws():
            def event(kind, detail):
                self.ws_events.append((kind, detail))

            async with connect("simple", url=self.stack.https_url, credentials=self.creds,
                               ca_file=self.stack.ca_file, on_event=event) as c:
                i = 0
                while self._running():
                    a = await c.infer(simple_request(i))
                    assert a["outputs"][0]["data"] == [i + k + 1 for k in range(16)], a
                    i += 1
                    await asyncio.sleep(PACE)
                self.counts["ws"] = i
                self.ws_connects = c.connects

        async def main():
            await asyncio.gather(agrpc(), ahttp(), ws())

        asyncio.run(main())

    def join(self):
        for t in self.threads:
            t.join(timeout=JOB_SECONDS + 60)


@pytest.fixture(scope="module")
def long_job(helix_stack):
    job = LongJob(helix_stack)
    yield job
    job.join()


def test_a_long_job_starts(long_job):
    time.sleep(1)
    assert not long_job.errors, long_job.errors
    assert long_job.creds.fetches == 1


def test_catalogue(helix_stack, long_job):
    with Client() as c:  # HELIX_HTTPS_URL, HELIX_CA_FILE, the demo client from the env
        models = {m["name"]: m for m in c.models()}
        assert models["simple"]["ready"] and models["simple"]["versions"] == ["1"], models["simple"]
        assert [t["name"] for t in c.model("simple")["inputs"]] == ["INPUT0", "INPUT1"]
        with pytest.raises(APIError) as e:
            c.model("no-such-model")
        assert e.value.code == "not_found" and e.value.status() == "404", e.value

    async def amodels():
        async with AsyncClient(credentials=long_job.creds) as c:
            return [m["name"] for m in await c.models()]

    assert "simple" in asyncio.run(amodels())


def test_api_key(helix_stack, monkeypatch):
    client = helix_stack.client(f"sdk-py-key-{int(time.time() * 1000)}", "models:infer,models:read")
    monkeypatch.setenv("MY_HELIX_KEY", helix_stack.api_key(client))
    # api_key_env names the variable; nothing else changes.
    with grpcclient.InferenceServerClient(api_key_env="MY_HELIX_KEY") as c:
        check_simple(c.infer("simple", simple_inputs(grpcclient, 3)), 3)
    key = APIKey.from_env("MY_HELIX_KEY")
    with httpclient.InferenceServerClient(credentials=key) as c:
        check_simple(c.infer("simple", simple_inputs(httpclient, 4)), 4)
    with Client(credentials=key) as c:
        assert "simple" in [m["name"] for m in c.models()]
        assert c.usage()["granularity"] == "hour"

    async def ws():
        async with connect("simple", credentials=key) as c:  # the key in the subprotocol
            a = await c.infer(simple_request(5))
            assert a["outputs"][0]["data"] == [5 + k + 1 for k in range(16)]

    asyncio.run(ws())


def test_free_plan_hammered_every_request_succeeds(helix_stack):
    """5 requests/s per model: 40 requests at once from 10 threads (gRPC and
    HTTP) all succeed, waiting out x-ratelimit-reset."""
    client = helix_stack.client(f"sdk-py-free-{int(time.time() * 1000)}", "models:infer", plan="free")
    creds = ClientCredentials(client.id, client.secret)
    waits = []

    def rand(a, b):
        waits.append(b)
        return 0.0 + (b - a) * 0.5

    policy = RetryPolicy(max_attempts=30, deadline=60, rand=rand)
    done, errors = [], []

    def worker(mod, n, k):
        try:
            with mod.InferenceServerClient(credentials=creds, retry=policy) as c:
                for i in range(n):
                    check_simple(c.infer("simple", simple_inputs(mod, k * 100 + i)), k * 100 + i)
                    done.append(1)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(grpcclient if k % 2 else httpclient, 4, k)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors
    assert len(done) == 40
    assert waits, "no request was refused 429: the plan's limit was not reached"
    # 40 requests at 5/s take at least 7 s (8 windows, the first counted at once).
    assert time.monotonic() - t0 >= 6


def test_free_plan_without_retries_says_what_to_do(helix_stack):
    client = helix_stack.client(f"sdk-py-free1-{int(time.time() * 1000)}", "models:infer", plan="free")
    c = grpcclient.InferenceServerClient(credentials=ClientCredentials(client.id, client.secret),
                                         retry=RetryPolicy(max_attempts=1))
    from helixflow import RateLimitedError
    with pytest.raises(RateLimitedError) as e:
        for i in range(20):
            c.infer("simple", simple_inputs(grpcclient, i))
    assert "over the plan's rate limit" in str(e.value) and "RetryPolicy" in str(e.value)
    assert e.value.reset is not None and e.value.reset >= 0


def test_missing_scope_names_it(helix_stack):
    client = helix_stack.client(f"sdk-py-ro-{int(time.time() * 1000)}", "models:read")
    creds = ClientCredentials(client.id, client.secret)
    for mod in (grpcclient, httpclient):
        with mod.InferenceServerClient(credentials=creds) as c:
            assert c.is_model_ready("simple")  # models:read is enough for this
            t0 = time.monotonic()
            with pytest.raises(PermissionDeniedError) as e:
                c.infer("simple", simple_inputs(mod))
            assert time.monotonic() - t0 < 2, "a 403 must not be retried"
            msg = str(e.value)
            assert "models:infer or models:simple:infer" in msg and "insufficient_scope" in msg, msg
            assert "helixctl clients update" in msg, msg


def test_wrong_secret_is_a_clear_error_without_a_retry_loop(helix_stack):
    client = helix_stack.client(f"sdk-py-bad-{int(time.time() * 1000)}", "models:infer")
    t0 = time.monotonic()
    with pytest.raises(AuthenticationError) as e:
        grpcclient.InferenceServerClient(credentials=ClientCredentials(client.id, "not-the-secret")).infer(
            "simple", simple_inputs(grpcclient))
    assert time.monotonic() - t0 < 3
    msg = str(e.value)
    assert "invalid_client" in msg and "HELIX_CLIENT_SECRET" in msg and client.id in msg, msg


def test_bad_configuration_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("HELIX_GRPC_ADDR")
    with pytest.raises(ConfigurationError, match="HELIX_GRPC_ADDR"):
        grpcclient.InferenceServerClient()
    with pytest.raises(ConfigurationError, match="does not exist"):
        httpclient.InferenceServerClient(ca_file=str(tmp_path / "nope.crt"))
    for k in ("HELIX_CLIENT_ID", "HELIX_CLIENT_SECRET"):
        monkeypatch.delenv(k)
    with pytest.raises(ConfigurationError, match="HELIX_CLIENT_ID"):
        Client()
    with pytest.raises(ConfigurationError, match="MISSING_KEY"):
        Client(api_key_env="MISSING_KEY")


def test_a_person_signs_in_with_pkce_and_refreshes(helix_stack, tmp_path):
    """PersonLogin.login as `helixctl login` does it: a person signs up and
    verifies through mailpit and signs in; the SDK's loopback listener gets
    the code; the refresh token rotates into the 0600 file; the file serves
    a new process; logout ends it."""
    person = Person(helix_stack)
    person.signup_and_verify()
    path = tmp_path / "credentials.json"
    p = PersonLogin.login(open_browser=person.browser, token_file=str(path), prompt=None, timeout=30)
    assert len(person.visits) == 1 and "code_challenge_method=S256" in person.visits[0]
    assert "client_id=helixctl" in person.visits[0]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert set(p.scope.split()) >= {"account", "models:infer"}
    with Client(credentials=p) as c:
        assert c.models() == []  # a person in no organization reaches no model in the catalogue
        with pytest.raises(PermissionDeniedError, match="organization"):
            c.usage()  # usage is a client's; a person's is per organization
    first = path.read_text()
    p.invalidate()  # as after a 401: the refresh token gets a new access token
    with grpcclient.InferenceServerClient(credentials=p) as c:
        check_simple(c.infer("simple", simple_inputs(grpcclient, 7)), 7)
    assert path.read_text() != first, "the rotated refresh token was not saved"
    again = PersonLogin.from_file(str(path))  # another process, helixctl's format
    with httpclient.InferenceServerClient(credentials=again) as c:
        check_simple(c.infer("simple", simple_inputs(httpclient, 8)), 8)
    again.logout()
    assert not path.exists()
    with pytest.raises(AuthenticationError, match="not logged in"):
        PersonLogin.from_file(str(path))


def test_z_long_job_saw_no_401(helix_stack, long_job):
    long_job.join()
    job = long_job
    assert not job.errors, job.errors
    assert set(job.counts) == {"grpc", "http", "grpc.aio", "http.aio", "ws"}, job.counts
    assert min(job.counts.values()) > 100, job.counts
    assert job.creds.invalidations == 0, "the gateway answered 401 to the long job"
    # Fetched again before each expiry (about every 2/3 of a lifetime), once at a time.
    assert 3 <= job.creds.fetches <= 6, job.creds.fetches
    assert job.ws_connects >= 2 and ("closed", 1008) in job.ws_events, job.ws_events
    # The usage ledger (flushed every 10 s) shows the job's requests.
    deadline = time.monotonic() + 20
    with Client(credentials=job.creds) as c:
        while True:
            totals = c.usage(model="simple")["totals"]
            if totals["requests"] > 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
    assert totals["requests"] > 0, totals

