"""docs/troubleshooting.md lists the messages the code sends.

Each table of the page after a `<!-- messages: NAME -->` line holds, in the
code spans of its first column, messages (or error codes, or reasons) of
one source, read here from the code itself (non-test Go files):

- complete sources, whose every message the page must list and nothing else:
  `check` and `check-reasons` (extauthz/check's denials: reason, error code,
  message), `oauth` (extauthz/oauth/errors.go's RFC 6749 codes), `webapi`
  (extauthz/webapi's error codes), `ws-close` (the worker's WebSocket close
  reasons and codes), `revoked` (extauthz/limits's revocation reasons);
- checked sources, whose listed messages must each be one the code sends
  (a string literal of the worker's or helix-authz's Go code, format verbs
  written `…`): `worker`, `ws-message`, `ratelimit`. The worker has
  hundreds of messages, named after Triton's; the page lists those users
  meet, and this fails when one of them changes in the code.

A rewording in the code fails here until the page says the same; so does
a new denial, error code or close reason the page does not explain.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "troubleshooting.md"

# github.com/coder/websocket's StatusCode names.
WS_STATUS = {
    "StatusNormalClosure": 1000, "StatusGoingAway": 1001, "StatusProtocolError": 1002,
    "StatusUnsupportedData": 1003, "StatusInvalidFramePayloadData": 1007,
    "StatusPolicyViolation": 1008, "StatusMessageTooBig": 1009, "StatusMandatoryExtension": 1010,
    "StatusInternalError": 1011, "StatusServiceRestart": 1012, "StatusTryAgainLater": 1013,
    "StatusBadGateway": 1014,
}

_GO_STRING = r'"(?:[^"\\\n]|\\.)*"'


def go_sources(*dirs: str) -> str:
    files = sorted(f for d in dirs for f in (ROOT / d).rglob("*.go") if not f.name.endswith("_test.go"))
    assert files, f"no Go files under {dirs}"
    return "\n".join(f.read_text() for f in files)


def unquote(lit: str) -> str:
    """A Go interpreted string literal's value (the escapes messages use)."""
    body = lit[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def placeholders(s: str) -> str:
    """A format string as the page writes it: each verb is …, in quotes for
    %q (as the user reads it)."""
    s = re.sub(r"%[-+# 0-9.*]*q", '"…"', s)
    return re.sub(r"%[-+# 0-9.*]*[a-zA-Z]", "…", s).replace("%%", "%")


def literals(*dirs: str) -> set[str]:
    return {placeholders(unquote(m)) for m in re.findall(_GO_STRING, go_sources(*dirs))}


# --------------------------------------------------------------- the page


def _cells(row: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]


def page_tables() -> dict[str, list[list[str]]]:
    """NAME -> the rows (cells) of the table after `<!-- messages: NAME -->`."""
    tables: dict[str, list[list[str]]] = {}
    lines = PAGE.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.fullmatch(r"<!-- messages: ([a-z-]+) -->", line.strip())
        if not m:
            continue
        assert m.group(1) not in tables, f"two tables marked {m.group(1)}"
        rows = []
        for row in lines[i + 1:]:
            if not row.startswith("|"):
                break
            rows.append(_cells(row))
        assert len(rows) > 2, f"table {m.group(1)}: no rows"
        tables[m.group(1)] = rows[2:]  # past the header and its rule
    return tables


def keys(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def keyed(rows: list[list[str]]) -> dict[str, list[str]]:
    """key -> its row; rows whose first cell has no code span carry none."""
    out: dict[str, list[str]] = {}
    for row in rows:
        for k in keys(row[0]):
            assert k not in out, f"{k!r} listed twice"
            out[k] = row
    return out


# --------------------------------------------------------------- the code


def check_denials() -> dict[str, tuple[str, str]]:
    """extauthz/check's denials: reason -> (error code, message)."""
    src = go_sources("extauthz/check")
    out: dict[str, tuple[str, str]] = {}
    # Constructors: func name(params) denial { return denial{outcome, reason, code, message, ...} }
    ctors: dict[str, tuple[str, str, str]] = {}
    for name, reason, code, msg in re.findall(
        r"func (\w+)\([^)]*\) denial \{\s*return denial\{\w+, (\w+|" + _GO_STRING + r"), (\w+|" + _GO_STRING
        + r"), (\w+|" + _GO_STRING + r"), [^}]*\}", src):
        ctors[name] = (reason, code, msg)
        if reason.startswith('"'):  # a constructor with a fixed reason (rateLimited)
            assert code.startswith('"') and msg.startswith('"'), name
            out[unquote(reason)] = (unquote(code), unquote(msg))
    assert {"unauthenticated", "forbidden", "unavailable"} <= set(ctors), f"denial constructors not found: {sorted(ctors)}"
    for name, (_, code, msg) in ctors.items():
        if name in ("unauthenticated", "unavailable"):
            for reason in re.findall(rf"\b{name}\(({_GO_STRING})\)", src):
                out[unquote(reason)] = (unquote(code), unquote(msg))
        elif name == "forbidden":
            for reason, message in re.findall(rf"\bforbidden\(({_GO_STRING}), ({_GO_STRING})\)", src):
                out[unquote(reason)] = (unquote(code), unquote(message))
    for reason, code, msg in re.findall(
        rf"denial\{{outcome\w+, ({_GO_STRING}), ({_GO_STRING}), ({_GO_STRING}), nil\}}", src):
        out[unquote(reason)] = (unquote(code), unquote(msg))
    assert len(out) >= 20, f"extauthz/check: only {len(out)} denials found; has the code's shape changed? {out}"
    return out


def const_codes(path: str, prefix: str) -> set[str]:
    src = (ROOT / path).read_text()
    codes = {unquote(v) for v in re.findall(rf"\b{prefix}\w*\s*=\s*({_GO_STRING})", src)}
    assert len(codes) >= 5, f"{path}: error codes not found"
    return codes


def ws_closes() -> dict[str, int]:
    """The worker's WebSocket close reasons -> close code."""
    src = go_sources("workers/wsapi")
    out = {unquote(r): WS_STATUS[s] for s, r in re.findall(rf"(?:closeWith|\.Close)\(websocket\.(\w+), ({_GO_STRING})\)", src)}
    # revokedReason(v): the Limits' reason, else its own fallback.
    m = re.search(r"func revokedReason\(.*?\n\}", src, re.S)
    assert m, "workers/wsapi: revokedReason not found"
    codes = set(re.findall(r"(?:closeWith|\.Close)\(websocket\.(\w+), revokedReason\(", src))
    assert len(codes) == 1, f"revokedReason closes with {codes}"
    for lit in re.findall(rf"return ({_GO_STRING})", m.group(0)):
        out[unquote(lit)] = WS_STATUS[codes.pop() if len(codes) == 1 else "StatusPolicyViolation"]
    assert len(out) >= 4, f"workers/wsapi: close reasons not found: {out}"
    return out


def revoked_reasons() -> set[str]:
    out = {unquote(r) for r in re.findall(rf"\brevoked\(({_GO_STRING})\)", go_sources("extauthz/limits"))}
    assert len(out) >= 4, "extauthz/limits: revoked(...) reasons not found"
    return out


# --------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def tables():
    return page_tables()


def test_every_source_has_its_table(tables):
    want = {"check", "check-reasons", "oauth", "webapi", "ws-close", "revoked", "worker", "ws-message", "ratelimit"}
    assert set(tables) == want


def _same(name, listed, code):
    missing, extra = sorted(set(code) - set(listed)), sorted(set(listed) - set(code))
    assert not missing and not extra, (
        f"docs/troubleshooting.md table '{name}': sent by the code but not listed: {missing}; "
        f"listed but not sent by the code: {extra}")


def test_check_messages(tables):
    denials = check_denials()
    rows = keyed(tables["check"])
    _same("check", rows, {msg for _, msg in denials.values()})
    for msg, row in rows.items():
        codes = {code for code, m in denials.values() if m == msg}
        assert set(keys(row[2])) == codes, f"check: {msg!r} goes with error {codes}, the page says {row[2]}"


def test_check_reasons(tables):
    denials = check_denials()
    rows = keyed(tables["check-reasons"])
    _same("check-reasons", rows, denials)
    for reason, row in rows.items():
        assert row[1] == denials[reason][1], f"check-reasons: {reason} answers {denials[reason][1]!r}, the page says {row[1]!r}"


def test_oauth_codes(tables):
    _same("oauth", keyed(tables["oauth"]), const_codes("extauthz/oauth/errors.go", "code"))


def test_webapi_codes(tables):
    _same("webapi", keyed(tables["webapi"]), const_codes("extauthz/webapi/webapi.go", "Code"))


def test_websocket_closes(tables):
    closes = ws_closes()
    rows = keyed(tables["ws-close"])
    _same("ws-close", rows, closes)
    for reason, row in rows.items():
        assert row[1] == str(closes[reason]), f"ws-close: {reason!r} closes with {closes[reason]}, the page says {row[1]}"


def test_revoked_reasons(tables):
    _same("revoked", keyed(tables["revoked"]), revoked_reasons())


@pytest.mark.parametrize("name,dirs", [
    ("worker", ("workers", "internal/wire")),  # the worker also sends wire.SharedMemoryThroughGateway
    ("ws-message", ("workers/wsapi",)),
    ("ratelimit", ("extauthz", "workers")),
])
def test_listed_messages_are_sent(tables, name, dirs):
    sent = literals(*dirs)
    listed = keyed(tables[name])
    assert listed, f"table {name}: no messages"
    unknown = sorted(m for m in listed if m not in sent)
    assert not unknown, f"docs/troubleshooting.md table '{name}': not a message of {dirs}'s code (reworded?): {unknown}"


def test_extraction_sees_rewording():
    """The helpers read what the code says, format verbs included."""
    assert placeholders("model '%s' queue is full (max_queue_size %d)") == "model '…' queue is full (max_queue_size …)"
    assert placeholders("model %q: input %q is missing") == 'model "…": input "…" is missing'
    assert unquote(r'"a \"b\" c"') == 'a "b" c'
    assert "request body too large" in literals("workers/httpapi")


# --------------------------------------------------------------- the stack


def _documented(tables, name, message):
    """Whether message is one the table lists, … matching any text."""
    for k in keyed(tables[name]):
        if re.fullmatch(".+?".join(re.escape(p) for p in k.split("…")), message):
            return True
    return False


def test_answers_through_the_gateway_are_listed(helix_stack, tables):
    """Mistakes sent through the gateway get answers this page lists, with
    the error code and status it says."""
    import httpx

    st = helix_stack
    token = st.client("h6-troubleshooting", "models:infer,models:read").token()
    read_only = st.client("h6-troubleshooting-ro", "models:read").token()
    check = keyed(tables["check"])

    def body(dt="INT32", shape=(1, 16), n=16, inputs=2):
        ins = [{"name": f"INPUT{i}", "datatype": dt if i == 0 else "INT32", "shape": list(shape) if i == 0 else [1, 16],
                "data": [0] * (n if i == 0 else 16)} for i in range(inputs)]
        return {"inputs": ins}

    bearer = {"authorization": f"Bearer {token}"}
    cases = [
        # (path, headers, body, status, table)
        ("/v2/models/simple/infer", {}, body(), 401, "check"),
        ("/v2/models/simple/infer", {"authorization": "Bearer a.b.c"}, body(), 401, "check"),
        ("/v2/models/simple/infer", {"authorization": "Basic abc"}, body(), 401, "check"),
        ("/v2/models/simple/infer", {"authorization": f"Bearer {read_only}"}, body(), 403, "check"),
        ("/v2/models/simple/versions/x/infer", bearer, body(), 403, "check"),
        ("/v2/models/h6_no_such_model/infer", bearer, body(), 404, "worker"),
        ("/v2/models/simple/versions/7/infer", bearer, body(), 404, "worker"),
        ("/v2/models/simple/infer", bearer, body("FP32"), 400, "worker"),
        ("/v2/models/simple/infer", bearer, body(shape=(1, 15), n=15), 400, "worker"),
        ("/v2/models/simple/infer", bearer, body(shape=(9, 16), n=144), 400, "worker"),
        ("/v2/models/simple/infer", bearer, body(inputs=1), 400, "worker"),
        ("/v2/models/simple/infer", bearer, "{", 400, "worker"),
    ]
    with httpx.Client(base_url=st.https_url, verify=st.ssl, timeout=30) as c:
        for path, headers, payload, status, table in cases:
            if isinstance(payload, str):
                r = c.post(path, content=payload, headers={**headers, "content-type": "application/json"})
            else:
                r = c.post(path, json=payload, headers=headers)
            what = f"POST {path} ({headers.get('authorization', 'no credential')[:12]}…)"
            assert r.status_code == status, f"{what}: {r.status_code} {r.text}"
            got = r.json()
            if table == "check":
                msg = got.get("error_description", got["error"])
                assert msg in check, f"{what}: {got} is not in the page's gateway denials"
                assert got["error"] in keys(check[msg][2]), f"{what}: error {got['error']!r}, the page says {check[msg][2]}"
                assert str(status) in check[msg][1], f"{what}: status {status}, the page says {check[msg][1]}"
            else:
                assert _documented(tables, table, got["error"]), f"{what}: {got['error']!r} is not on the page (table {table})"


def test_oauth_and_api_answers_are_listed(helix_stack, tables):
    """The token endpoint's and the people's API's errors, as sent through
    the gateway, carry codes and statuses the page lists."""
    import httpx

    st = helix_stack
    oauth, webapi = keyed(tables["oauth"]), keyed(tables["webapi"])
    with httpx.Client(base_url=st.https_url, verify=st.ssl, timeout=30) as c:
        for data, auth, status in [
            ({"grant_type": "client_credentials"}, ("h6-no-such-client", "wrong"), 401),
            ({"grant_type": "password"}, ("h6-no-such-client", "wrong"), 400),
            ({}, ("h6-no-such-client", "wrong"), 400),
        ]:
            r = c.post(st.token_url, data=data, auth=auth)
            got = r.json()
            assert r.status_code == status and got["error"] in oauth, f"/oauth2/token {data}: {r.status_code} {got}"
            assert str(status) in oauth[got["error"]][1], f"{got['error']}: {status}, the page says {oauth[got['error']][1]}"
        for method, path, status in [("GET", "/api/v1/account", 401), ("POST", "/api/v1/login", 415)]:
            r = c.request(method, path, content=b"x" if method == "POST" else None,
                          headers={"content-type": "text/plain"} if method == "POST" else {})
            got = r.json()
            assert r.status_code == status and got["error"] in webapi, f"{method} {path}: {r.status_code} {got}"
            assert str(status) in webapi[got["error"]][1], f"{got['error']}: {status}, the page says {webapi[got['error']][1]}"


def test_grpc_answers_are_listed(helix_stack, tables):
    """gRPC callers get the same messages as grpc-message, with the codes
    the page gives."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    st = helix_stack
    token = st.client("h6-troubleshooting", "models:infer,models:read").token()
    check = keyed(tables["check"])
    c = grpcclient.InferenceServerClient(url=st.gateway, ssl=True, root_certificates=st.ca_file)
    try:
        for model, headers, code, table in [
            ("simple", None, "UNAUTHENTICATED", "check"),
            ("simple", {"authorization": "Bearer a.b.c"}, "UNAUTHENTICATED", "check"),
            ("h6_no_such_model", {"authorization": f"Bearer {token}"}, "NOT_FOUND", "worker"),
        ]:
            with pytest.raises(InferenceServerException) as e:
                c.get_model_metadata(model, headers=headers)
            assert e.value.status() == f"StatusCode.{code}", e.value
            msg = e.value.message()
            if table == "check":
                assert msg in check and code in check[msg][1], f"{msg!r} ({code}) is not on the page as such"
            else:
                assert _documented(tables, table, msg), f"{msg!r} is not on the page"
    finally:
        c.close()
