"""api/inference.yaml against the running stack, through the gateway
(issue 19): schemathesis generates positive and negative requests for every
operation and checks that the gateway and the workers answer as the file
says (no 5xx, documented status codes, content types, bodies and headers),
that every operation was exercised, and that the gateway's own answers
(401, 403, 429) are the documented ones.

Bounded: MAX_EXAMPLES per operation and generation mode (plus the explicit
examples and schemathesis' coverage cases) keeps the file well under 60 s
on the shared stack."""

import collections
import os
import threading
import time

import httpx
import pytest
import schemathesis
import yaml
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from helixstack import ROOT, TOKEN_LIFETIME

SPEC = ROOT / "api" / "inference.yaml"
# HELIX_OPENAPI_MAX_EXAMPLES=200 searches deeper (minutes, not for make test).
MAX_EXAMPLES = int(os.environ.get("HELIX_OPENAPI_MAX_EXAMPLES", "10"))
# A token is refreshed well before its TOKEN_LIFETIME ends.
REFRESH_S = TOKEN_LIFETIME // 2


def unsupported_method_but_query(ctx, response, case):
    """schemathesis' unsupported_method, except for QUERY: Envoy refuses a
    QUERY without Content-Type with 400 (query_missing_content_type)
    before any route, as the QUERY method's draft requires a body's type;
    every other undeclared method gets the worker's 405 with Allow."""
    if response.request.method == "QUERY" and response.status_code == 400:
        return None
    return unsupported_method(ctx, response, case)


def _envoy_path_rejection(response):
    """Envoy's own 400 for a request target it cannot normalize (an
    escaped slash or backslash, %2F or %5C, in a generated path
    parameter: path_normalization_failed): no body and no Content-Type,
    answered before any route, so not from a worker."""
    return (response.status_code == 400 and not response.content and "content-type" not in response.headers
            and "x-envoy-upstream-service-time" not in response.headers)


def _unless_envoy_path_rejection(check):
    """A waiver: OpenAPI cannot say that a 400 may have no body at all, so
    the body checks skip Envoy's empty path rejection (its status is still
    checked: 400 is documented)."""

    def wrapped(ctx, response, case):
        if _envoy_path_rejection(response):
            return None
        return check(ctx, response, case)

    wrapped.__name__ = check.__name__
    return wrapped


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    _unless_envoy_path_rejection(content_type_conformance),
    _unless_envoy_path_rejection(response_schema_conformance),
    response_headers_conformance,
    negative_data_rejection,
    ignored_auth,
    unsupported_method_but_query,
    missing_required_header,
    allow_header_conformance,
]
# 413 (body too large) and 426 (a WebSocket GET that is no handshake)
# are refusals too.
NEGATIVE_STATUSES = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "426", "428", "429"]
# WebSocket upgrades are exercised by tests/websocket (a real upgrade);
# here they are plain GETs with the documented headers, which the worker
# refuses as no handshake (426, or 400 without the subprotocol), past the
# gateway's check.
READ, INFER = "models:read", "models:infer"

# operation label -> statuses it answered (filled by test_inference_api).
_seen = collections.defaultdict(collections.Counter)


def _load():
    schema = schemathesis.openapi.from_path(SPEC)
    schema.config.generation.update(
        modes=list(GenerationMode),  # positive and negative
        max_examples=MAX_EXAMPLES,
        # The credential is the call's Authorization header only: a
        # generated x-api-key beside it would be a second one (401).
        with_security_parameters=False,
        deterministic=True,
    )
    schema.config.checks.negative_data_rejection.expected_statuses = NEGATIVE_STATUSES
    # A WebSocket GET without Upgrade is 426 (RFC 9110 15.5.22), without
    # the kserve.v2.helix subprotocol 400.
    schema.config.checks.missing_required_header.expected_statuses = ["400", "426"]
    return schema


def _target(schema, stack):
    schema.config.update(base_url=stack.https_url, tls_verify=stack.ca_file, request_timeout=20)


class _Tokens:
    """Access tokens of one client, fetched again before they expire
    (thread-safe: schemathesis may call from several threads)."""

    def __init__(self, client, clock=time.monotonic):
        self.client, self.clock, self.lock, self.token, self.at = client, clock, threading.Lock(), None, 0.0

    def get(self):
        with self.lock:
            if self.token is None or self.clock() - self.at > REFRESH_S:
                self.token, self.at = self.client.token(), self.clock()
            return self.token


# The schema is loaded when the module is (schemathesis' lazy
# from_fixture loader does not work with pytest 9: it sets
# request.node._nodeid), and its coverage cases are built at collection,
# long before a 20 s token would be sent: so no auth provider, the token
# goes in with each call instead (schemathesis counts headers passed to
# call_and_validate as explicit authentication, for ignored_auth).
schema = _load()
_tokens = {}


@pytest.fixture(scope="module")
def inference_stack(helix_stack):
    """The stack, and a client allowed every operation of the file (both
    scopes, every model) whose tokens test_inference_api sends."""
    _tokens["client"] = _Tokens(helix_stack.client("openapi-inference", f"{INFER},{READ}"))
    yield helix_stack
    _tokens.clear()


@schema.parametrize()
def test_inference_api(inference_stack, case):
    token = _tokens["client"].get()
    response = case.call_and_validate(base_url=inference_stack.https_url, verify=inference_stack.ca_file,
                                      timeout=20, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)
    _seen[case.operation.label][response.status_code] += 1


def _operations():
    doc = yaml.safe_load(SPEC.read_text())
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in ("get", "post", "put", "delete", "patch"):
                yield method.upper(), path, op


def test_every_operation_exercised():
    """Every operation of the file was called by test_inference_api, and
    each was answered by a worker at least once with success: 2xx, and for
    a WebSocket operation (a plain GET here, no handshake) the worker's
    400 or 426, past the gateway's check. The file's examples name the
    stack's models (simple, version 1)."""
    ops = {f"{m} {p}" for m, p, _ in _operations()}
    if not _seen:
        pytest.fail("test_inference_api did not run (run the whole file)")
    assert ops - set(_seen) == set()
    assert set(_seen) - ops == set()

    def reached(op, statuses):
        if op.endswith("/infer/ws"):
            return bool({400, 426} & set(statuses))
        return any(200 <= s < 300 for s in statuses)

    assert {op: dict(st) for op, st in _seen.items() if not reached(op, st)} == {}


def _concrete(path):
    return path.replace("{model}", "simple").replace("{version}", "1")


def _request(method, path, op):
    kw = {"headers": {}}
    if op.get("requestBody"):
        kw["json"] = op["requestBody"]["content"]["application/json"]["examples"]["simple"]["value"]
    for p in op.get("parameters", []):
        if p.get("in") == "header" and p.get("required"):
            kw["headers"][p["name"]] = "kserve.v2.helix" if p["name"] == "Sec-WebSocket-Protocol" else "websocket"
    return kw


def _validate(schema, method, path, response):
    """Validate a raw httpx response with schemathesis' checks."""
    op = schema[path][method]
    case = op.Case(path_parameters={k: v for k, v in (("model", "simple"), ("version", "1")) if "{" + k + "}" in path})
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                             response_schema_conformance, response_headers_conformance])


@pytest.fixture(scope="module")
def plain_schema(helix_stack):
    """The file without an auth provider, for validating answers."""
    plain = _load()
    _target(plain, helix_stack)
    return plain


def test_unauthenticated_and_wrong_scope(helix_stack, plain_schema):
    """No credential: 401 with WWW-Authenticate: Bearer; a bad token or
    API key: 401 invalid_token; a token or API key of a client without the
    operation's scope: 403 insufficient_scope. Each answer is validated
    against the file. (Tokens live 20 s: these are fetched just before
    use.)"""
    read_only = helix_stack.client("openapi-inference-read", READ)
    infer_only = helix_stack.client("openapi-inference-infer", INFER)
    tokens = {READ: read_only.token(), INFER: infer_only.token()}
    keys = {READ: helix_stack.api_key(read_only), INFER: helix_stack.api_key(infer_only)}
    with httpx.Client(base_url=helix_stack.https_url, verify=helix_stack.ssl, timeout=20) as http:
        for method, path, op in _operations():
            kw = _request(method, path, op)
            url = _concrete(path)
            r = http.request(method, url, **kw)
            assert r.status_code == 401, (method, url, r.status_code, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json() == {"error": "unauthorized", "error_description": "credential required"}
            _validate(plain_schema, method, path, r)

            r = http.request(method, url, **{**kw, "headers": {**kw["headers"], "Authorization": "Bearer not-a-jwt"}})
            assert r.status_code == 401, (method, url, r.status_code, r.text)
            assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
            assert r.json() == {"error": "invalid_token"}
            _validate(plain_schema, method, path, r)

            r = http.request(method, url, **{**kw, "headers": {**kw["headers"], "x-api-key": "hx_not-a-key"}})
            assert r.status_code == 401, (method, url, r.status_code, r.text)
            assert r.json() == {"error": "invalid_token"}
            _validate(plain_schema, method, path, r)

            needed = op.get("security", [{"bearer": [READ]}])[0]["bearer"][0]
            wrong = INFER if needed == READ else READ
            r = http.request(method, url, **{**kw, "headers": {**kw["headers"], "Authorization": f"Bearer {tokens[wrong]}"}})
            assert r.status_code == 403, (method, url, wrong, r.status_code, r.text)
            assert r.json() == {"error": "insufficient_scope"}
            assert r.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
            _validate(plain_schema, method, path, r)

            r = http.request(method, url, **{**kw, "headers": {**kw["headers"], "x-api-key": keys[wrong]}})
            assert r.status_code == 403, (method, url, wrong, r.status_code, r.text)
            assert r.json() == {"error": "insufficient_scope"}
            _validate(plain_schema, method, path, r)


def test_rate_limited_answer(helix_stack, plain_schema):
    """Over its plan (free: 5 requests per second) a client gets the
    documented 429 with x-ratelimit-* and Retry-After; its allowed
    answers carry x-ratelimit-* too."""
    client = helix_stack.client("openapi-inference-free", READ, plan="free")
    headers = {"Authorization": f"Bearer {client.token()}"}
    with httpx.Client(base_url=helix_stack.https_url, verify=helix_stack.ssl, timeout=20) as http:
        # Until refused: on a loaded machine a second may pass between a
        # few of them and refill the window.
        answers = []
        while len(answers) < 60 and 429 not in [r.status_code for r in answers]:
            answers.append(http.get("/v2/models/simple", headers=headers))
    statuses = [r.status_code for r in answers]
    assert 200 in statuses and 429 in statuses, statuses
    for r in answers:
        _validate(plain_schema, "GET", "/v2/models/{model}", r)
        assert int(r.headers["x-ratelimit-remaining"]) >= 0
        assert r.headers["x-ratelimit-limit"].startswith("5, 5;w=1")
    limited = next(r for r in answers if r.status_code == 429)
    assert limited.json() == {"error": "rate_limited", "error_description": "rate limit exceeded"}
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["x-ratelimit-remaining"] == "0"


def test_binary_data_extension(helix_stack, plain_schema):
    """Triton's binary tensor data extension as the file describes it: a
    JSON header of Inference-Header-Content-Length bytes and the raw
    inputs, an output asked for in binary coming back as
    application/octet-stream with its own header length."""
    import json
    import struct

    header = json.dumps({
        "inputs": [{"name": n, "datatype": "INT32", "shape": [1, 16], "parameters": {"binary_data_size": 64}}
                   for n in ("INPUT0", "INPUT1")],
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}, {"name": "OUTPUT1"}],
    }).encode()
    body = header + struct.pack("<16i", *range(16)) + struct.pack("<16i", *[1] * 16)
    client = helix_stack.client("openapi-inference-binary", INFER)
    headers = {"Authorization": f"Bearer {client.token()}", "Inference-Header-Content-Length": str(len(header)),
               "Content-Type": "application/octet-stream", "Accept-Encoding": "identity"}
    with httpx.Client(base_url=helix_stack.https_url, verify=helix_stack.ssl, timeout=20) as http:
        for path in ("/v2/models/{model}/infer", "/v2/models/{model}/versions/{version}/infer"):
            r = http.post(_concrete(path), content=body, headers=headers)
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "application/octet-stream"
            n = int(r.headers["inference-header-content-length"])
            out = json.loads(r.content[:n])
            _validate(plain_schema, "POST", path, r)
            assert out["outputs"][0]["parameters"] == {"binary_data_size": 64}
            assert list(struct.unpack("<16i", r.content[n:])) == [i + 1 for i in range(16)]
            assert out["outputs"][1]["data"] == [i - 1 for i in range(16)]

            bad = http.post(_concrete(path), content=body, headers={**headers, "Inference-Header-Content-Length": "x"})
            assert bad.status_code == 400
            assert bad.json() == {"error": "Unable to parse Inference-Header-Content-Length, got: x"}
            _validate(plain_schema, "POST", path, bad)


def test_tokens_refresh_before_expiry(helix_stack):
    """The run's tokens are fetched again once REFRESH_S (half their
    TOKEN_LIFETIME) has passed, so a long run never sends an expired one."""
    now = [0.0]
    tokens = _Tokens(helix_stack.client("openapi-inference-refresh", READ), clock=lambda: now[0])
    first = tokens.get()
    now[0] = REFRESH_S
    assert tokens.get() == first
    now[0] = REFRESH_S + 0.1
    second = tokens.get()
    assert second != first
    with httpx.Client(base_url=helix_stack.https_url, verify=helix_stack.ssl, timeout=20) as http:
        assert http.get("/v2", headers={"Authorization": f"Bearer {second}"}).status_code == 200


def test_model_list(helix_stack, plain_schema):
    """A client whose model list is [simple] reads simple, is refused
    another model and the statistics of all models (they need `*`), with
    the documented 403."""
    client = helix_stack.client("openapi-inference-simple-only", READ, models="simple")
    headers = {"Authorization": f"Bearer {client.token()}"}
    with httpx.Client(base_url=helix_stack.https_url, verify=helix_stack.ssl, timeout=20) as http:
        for url, path, want in (("/v2/models/simple", "/v2/models/{model}", 200),
                                ("/v2/models/mlp", "/v2/models/{model}", 403),
                                ("/v2/models/stats", "/v2/models/stats", 403)):
            r = http.get(url, headers=headers)
            assert r.status_code == want, (url, r.status_code, r.text)
            if want == 403:
                assert r.json() == {"error": "insufficient_scope"}
            _validate(plain_schema, "GET", path, r)
