package check

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/helixflow/helixflow/extauthz/ratelimit"
	"github.com/helixflow/helixflow/extauthz/secret"
	"github.com/helixflow/helixflow/internal/wire"
)

func TestParseWSProtocols(t *testing.T) {
	long := strings.Repeat("a", maxCredentialBytes+1)
	tests := []struct {
		in   string
		want wsOffer
	}{
		{"", wsOffer{}},
		{"kserve.v2.helix", wsOffer{helix: true}},
		{"kserve.v2.helix, helix.bearer.abc.def-ghi_jkl", wsOffer{helix: true, token: "abc.def-ghi_jkl", tokens: 1}},
		{"helix.bearer.hx_key", wsOffer{token: "hx_key", tokens: 1}},
		{" helix.bearer.tok ,\tkserve.v2.helix ", wsOffer{helix: true, token: "tok", tokens: 1}},
		{",, kserve.v2.helix,,", wsOffer{helix: true}},
		{"chat, superchat", wsOffer{}},
		{"KSERVE.V2.HELIX", wsOffer{}},                                 // names are case-sensitive
		{"Helix.Bearer.tok", wsOffer{}},                                // not the prefix: another protocol
		{"kserve.v2.helix, helix.bearer.", wsOffer{bad: true}},         // empty credential
		{"helix.bearer.a, helix.bearer.b", wsOffer{bad: true}},         // two credentials
		{"helix.bearer.a, helix.bearer.a", wsOffer{bad: true}},         // even the same one
		{"helix.bearer.a=b", wsOffer{bad: true}},                       // not a token
		{"helix.bearer.a b", wsOffer{bad: true}},                       // space inside
		{"kserve.v2.helix, helix.bearer.a/b", wsOffer{bad: true}},      // '/' is no tchar
		{"kserve.v2.helix; q=1", wsOffer{bad: true}},                   // parameters are not protocols
		{"kserve.v2.helix, \"quoted\"", wsOffer{bad: true}},            // quoted string
		{"helix.bearer.tok\x00", wsOffer{bad: true}},                   // control byte
		{"helix.bearer." + long, wsOffer{bad: true}},                   // oversized credential
		{strings.Repeat("kserve.v2.helix,", 1000), wsOffer{bad: true}}, // oversized header
	}
	for _, tc := range tests {
		if got := parseWSProtocols(tc.in); got != tc.want {
			t.Errorf("parseWSProtocols(%.40q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { parseWSProtocols("kserve.v2.helix, helix.bearer.abc") }); n != 0 {
		t.Errorf("parseWSProtocols allocates %v times", n)
	}
}

// FuzzParseWSProtocols: no panic; a credential it returns is one entry of
// the header, a token68 of bounded size, and never passes for a protocol.
func FuzzParseWSProtocols(f *testing.F) {
	for _, s := range []string{"", "kserve.v2.helix", "kserve.v2.helix, helix.bearer.eyJ.x.y", "helix.bearer.hx_a,helix.bearer.hx_b",
		" , helix.bearer.a=", "helix.bearer.", "a,,b\t, c", "helix.bearer.\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		o := parseWSProtocols(v)
		if o.bad {
			if o != (wsOffer{bad: true}) {
				t.Fatalf("bad offer carries %+v", o)
			}
			return
		}
		if o.tokens > 1 || (o.tokens == 1) != (o.token != "") {
			t.Fatalf("%d tokens, token %q", o.tokens, o.token)
		}
		if o.token != "" {
			if !isToken68(o.token) || len(o.token) > maxCredentialBytes || !strings.Contains(v, wire.WSTokenProtocolPrefix+o.token) {
				t.Fatalf("token %q from %q", o.token, v)
			}
		}
		if o.helix && !strings.Contains(v, wire.WSProtocol) {
			t.Fatalf("offers %s in %q", wire.WSProtocol, v)
		}
		kind, cred := wsCredential(v)
		if (kind == credNone) != (o.tokens == 0) || cred != o.token {
			t.Fatalf("wsCredential = %v %q for %+v", kind, cred, o)
		}
	})
}

// TestCheckWebSocket covers the upgrade: the infer target on the model,
// the credential in a header or among the subprotocols, which never go
// on as the client sent them, and the stream credential for the worker.
func TestCheckWebSocket(t *testing.T) {
	e := newEnv(t)
	resnet := e.mint(t, claims([]string{"models:resnet:infer"}, []string{"resnet"}))
	all := e.mint(t, claims([]string{"models:infer"}, []string{"*"}))
	bert := e.mint(t, claims([]string{"models:bert:infer"}, []string{"*"}))
	reader := e.mint(t, claims([]string{"models:read"}, []string{"*"}))
	gone := claims([]string{"models:infer"}, []string{"*"})
	gone.JTI = "jti-gone"
	e.revs.revoked["jti-gone"] = true
	revoked := e.mint(t, gone)
	key, prefix, err := secret.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	keyExpires := testNow.Add(48 * time.Hour)
	e.apik.add(key, Principal{ClientID: "client-k", Plan: "free", Scopes: []string{"models:resnet:infer"}, Models: []string{"resnet"}, Expires: keyExpires})
	forever, foreverPrefix, err := secret.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	e.apik.add(forever, Principal{ClientID: "client-k", Plan: "free", Scopes: []string{"models:infer"}, Models: []string{"*"}})

	const ws = "/v2/models/resnet/infer/ws"
	sub := func(cred string) string { return wire.WSProtocol + ", " + wire.WSTokenProtocolPrefix + cred }
	tokExp := strconv.FormatInt(testNow.Add(10*time.Minute).Unix(), 10)
	tests := []struct {
		name     string
		path     string
		headers  map[string]string
		status   int
		body     string
		model    string
		cred     string // x-helix-credential
		expires  string // x-helix-expires; "" = removed
		protocol string // sec-websocket-protocol set; "" = removed when sent
		secret   string // must not reach the worker
	}{
		{name: "token in the subprotocols", path: ws, headers: map[string]string{"sec-websocket-protocol": sub(resnet)},
			status: 200, model: "resnet", cred: "jti:jti-1", expires: tokExp, protocol: wire.WSProtocol, secret: resnet},
		{name: "token first in the list", path: "/v2/models/resnet/versions/2/infer/ws?trace=1",
			headers: map[string]string{"sec-websocket-protocol": wire.WSTokenProtocolPrefix + resnet + "," + wire.WSProtocol},
			status:  200, model: "resnet", cred: "jti:jti-1", expires: tokExp, protocol: wire.WSProtocol, secret: resnet},
		{name: "all-models scope", path: "/v2/models/bert/infer/ws", headers: map[string]string{"sec-websocket-protocol": sub(all)},
			status: 200, model: "bert", cred: "jti:jti-1", expires: tokExp, protocol: wire.WSProtocol, secret: all},
		{name: "API key in the subprotocols", path: ws, headers: map[string]string{"sec-websocket-protocol": sub(key)},
			status: 200, model: "resnet", cred: "key:" + prefix, expires: strconv.FormatInt(keyExpires.Unix(), 10), protocol: wire.WSProtocol, secret: key},
		{name: "API key that never expires", path: ws, headers: map[string]string{"sec-websocket-protocol": sub(forever)},
			status: 200, model: "resnet", cred: "key:" + foreverPrefix, protocol: wire.WSProtocol, secret: forever},
		{name: "bearer header, no subprotocols", path: ws, headers: bearerHdr(resnet),
			status: 200, model: "resnet", cred: "jti:jti-1", expires: tokExp},
		{name: "API key header", path: ws, headers: map[string]string{"x-api-key": key, "sec-websocket-protocol": wire.WSProtocol},
			status: 200, model: "resnet", cred: "key:" + prefix, expires: strconv.FormatInt(keyExpires.Unix(), 10), protocol: wire.WSProtocol},
		{name: "header wins, the subprotocol credential is stripped", path: ws,
			headers: map[string]string{"authorization": "Bearer " + resnet, "sec-websocket-protocol": sub("other-secret")},
			status:  200, model: "resnet", cred: "jti:jti-1", expires: tokExp, protocol: wire.WSProtocol, secret: "other-secret"},
		{name: "header wins over a malformed list", path: ws,
			headers: map[string]string{"authorization": "Bearer " + resnet, "sec-websocket-protocol": "helix.bearer.a b"},
			status:  200, model: "resnet", cred: "jti:jti-1", expires: tokExp, secret: "helix.bearer"},
		{name: "our protocol not offered: the header is removed", path: ws, headers: map[string]string{"sec-websocket-protocol": wire.WSTokenProtocolPrefix + resnet},
			status: 200, model: "resnet", cred: "jti:jti-1", expires: tokExp, secret: resnet},
		{name: "client-sent credential headers are replaced", path: ws,
			headers: map[string]string{"sec-websocket-protocol": sub(resnet), "x-helix-credential": "jti:other", "x-helix-expires": "99999999999"},
			status:  200, model: "resnet", cred: "jti:jti-1", expires: tokExp, protocol: wire.WSProtocol},

		{name: "no credential", path: ws, headers: map[string]string{"sec-websocket-protocol": wire.WSProtocol}, status: 401, body: `{"error":"unauthorized","error_description":"credential required"}`},
		{name: "two subprotocol credentials", path: ws, headers: map[string]string{"sec-websocket-protocol": sub(resnet) + ", " + wire.WSTokenProtocolPrefix + all},
			status: 401, body: bodyInvalidToken, secret: resnet},
		{name: "empty subprotocol credential", path: ws, headers: map[string]string{"sec-websocket-protocol": sub("")}, status: 401, body: bodyInvalidToken},
		{name: "bad token", path: ws, headers: map[string]string{"sec-websocket-protocol": sub("eyJ.bad.token")}, status: 401, body: bodyInvalidToken},
		{name: "revoked token", path: ws, headers: map[string]string{"sec-websocket-protocol": sub(revoked)}, status: 401, body: bodyInvalidToken, secret: revoked},
		{name: "unknown API key", path: ws, headers: map[string]string{"sec-websocket-protocol": sub("hx_unknown")}, status: 401, body: bodyInvalidToken},
		{name: "another model's scope", path: ws, headers: map[string]string{"sec-websocket-protocol": sub(bert)}, status: 403},
		{name: "read scope is not infer", path: ws, headers: map[string]string{"sec-websocket-protocol": sub(reader)}, status: 403},
		{name: "subprotocol credential off the WebSocket path", path: "/v2/models/resnet/infer",
			headers: map[string]string{"sec-websocket-protocol": sub(resnet)}, status: 401, body: `{"error":"unauthorized","error_description":"credential required"}`},
		{name: "not a WebSocket path below the model", path: "/v2/models/resnet/infer/ws/x", headers: bearerHdr(resnet), status: 403},
		{name: "WebSocket suffix but no model route", path: "/v2/models/infer/ws", headers: map[string]string{"sec-websocket-protocol": sub(all)}, status: 403},
		{name: "bad version", path: "/v2/models/resnet/versions/x/infer/ws", headers: bearerHdr(resnet), status: 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.check(t, restReq("GET", tc.path, tc.headers), expect{status: tc.status, body: tc.body, model: tc.model}, tc.secret)
			if tc.status != 200 {
				return
			}
			if got := r.headers[wire.HeaderCredential]; got != tc.cred {
				t.Errorf("%s = %q, want %q", wire.HeaderCredential, got, tc.cred)
			}
			if got := r.headers[wire.HeaderExpires]; got != tc.expires {
				t.Errorf("%s = %q, want %q", wire.HeaderExpires, got, tc.expires)
			}
			if tc.expires == "" && !slices.Contains(r.remove, wire.HeaderExpires) {
				t.Errorf("%s not removed: %v", wire.HeaderExpires, r.remove)
			}
			_, sent := tc.headers[wire.HeaderWSProtocol]
			got, set := r.headers[wire.HeaderWSProtocol]
			switch {
			case tc.protocol != "" && got != tc.protocol:
				t.Errorf("%s = %q, want %q", wire.HeaderWSProtocol, got, tc.protocol)
			case tc.protocol == "" && set:
				t.Errorf("%s set to %q", wire.HeaderWSProtocol, got)
			case tc.protocol == "" && sent && !slices.Contains(r.remove, wire.HeaderWSProtocol):
				t.Errorf("%s as sent not removed: %v", wire.HeaderWSProtocol, r.remove)
			}
		})
	}
}

// TestCheckStreamCredential: ModelStreamInfer gets the same credential
// headers as a WebSocket, and any other request none of them; a request
// that is no WebSocket never forwards Sec-WebSocket-Protocol.
func TestCheckStreamCredential(t *testing.T) {
	e := newEnv(t)
	tok := e.mint(t, claims([]string{"models:infer"}, []string{"*"}))
	r := e.check(t, grpcReq("ModelStreamInfer", nil, map[string]string{"authorization": "Bearer " + tok, "helix-model": "resnet"}),
		expect{status: 200, model: "resnet", grpc: true})
	if r.headers[wire.HeaderCredential] != "jti:jti-1" || r.headers[wire.HeaderExpires] != strconv.FormatInt(testNow.Add(10*time.Minute).Unix(), 10) {
		t.Errorf("stream headers %v", r.headers)
	}
	// A person's token names its session too: ending the session ends
	// the stream at its next message.
	person := claims([]string{"models:infer"}, []string{"*"})
	person.JTI, person.SessionID = "jti-2", "s-1"
	r = e.check(t, grpcReq("ModelStreamInfer", nil, map[string]string{"authorization": "Bearer " + e.mint(t, person), "helix-model": "resnet"}),
		expect{status: 200, model: "resnet", grpc: true})
	if r.headers[wire.HeaderCredential] != "jti:jti-2;sid:s-1" {
		t.Errorf("a person's stream: %s = %q", wire.HeaderCredential, r.headers[wire.HeaderCredential])
	}
	r = e.check(t, restReq("POST", "/v2/models/resnet/infer", map[string]string{"authorization": "Bearer " + tok, "sec-websocket-protocol": wire.WSProtocol}),
		expect{status: 200, model: "resnet"})
	if _, ok := r.headers[wire.HeaderCredential]; ok {
		t.Errorf("unary request got %s", wire.HeaderCredential)
	}
	if !slices.Contains(r.remove, wire.HeaderWSProtocol) {
		t.Errorf("%s not removed from a unary request: %v", wire.HeaderWSProtocol, r.remove)
	}
	// A credential without an id cannot open a stream: its messages
	// could not be re-checked.
	if _, d := streamCredentialOf(&Principal{ClientID: "c"}, &reqHeaders{credKind: credJWT}); d == nil || d.outcome != outcomeForbidden {
		t.Errorf("token without jti: %+v", d)
	}
	if _, d := streamCredentialOf(&Principal{ClientID: "c"}, &reqHeaders{credKind: credAPIKey, cred: "hx_not_a_key"}); d == nil {
		t.Error("unparsable API key opened a stream")
	}
}

// TestStreamOpensSpendNothing: opening a WebSocket or ModelStreamInfer
// takes no plan unit (the worker counts each message); a unary request
// takes one.
func TestStreamOpensSpendNothing(t *testing.T) {
	e := newEnv(t)
	lim := &fakeLimits{d: ratelimit.Decision{Limit: 5, Reset: time.Second, Windows: twoWindows}} // over the limit
	e.svc.rateLimits = lim
	tok := e.mint(t, claims([]string{"models:infer"}, []string{"*"}))
	r := e.check(t, restReq("GET", "/v2/models/resnet/infer/ws", map[string]string{"sec-websocket-protocol": wire.WSProtocol + ", " + wire.WSTokenProtocolPrefix + tok}),
		expect{status: 200, model: "resnet"}, tok)
	if len(r.headers) == 0 {
		t.Fatal("no headers")
	}
	e.check(t, grpcReq("ModelStreamInfer", nil, map[string]string{"authorization": "Bearer " + tok}), expect{status: 200, grpc: true})
	if len(lim.calls) != 0 {
		t.Fatalf("stream opens took plan units: %v", lim.calls)
	}
	resp, _ := e.svc.Check(context.Background(), restReq("POST", "/v2/models/resnet/infer", bearerHdr(tok)))
	if got := decode(t, resp).http; got != 429 {
		t.Fatalf("unary request over the limit: %d, want 429", got)
	}
	if len(lim.calls) != 1 {
		t.Fatalf("unary request: %d Take calls, want 1", len(lim.calls))
	}
}

// FuzzCheckWSProtocol drives the whole check with arbitrary paths and
// subprotocol lists for a client allowed only model "resnet": no panic, no
// other model, and an allowed request never forwards the list as sent nor
// any credential in a header it sets.
func FuzzCheckWSProtocol(f *testing.F) {
	e := newEnv(f)
	tok := e.mint(f, claims([]string{"models:resnet:infer"}, []string{"resnet"}))
	f.Add("/v2/models/resnet/infer/ws", wire.WSProtocol+", "+wire.WSTokenProtocolPrefix+tok)
	f.Add("/v2/models/resnet/versions/1/infer/ws?x=1", wire.WSTokenProtocolPrefix+tok)
	f.Add("/v2/models/resnet/infer", wire.WSProtocol+", "+wire.WSTokenProtocolPrefix+tok)
	f.Add("/v2/models/bert/infer/ws", wire.WSProtocol+","+wire.WSTokenProtocolPrefix+tok+","+wire.WSTokenProtocolPrefix+tok)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, path, protocols string) {
		req := restReq("GET", path, map[string]string{wire.HeaderWSProtocol: protocols})
		resp, err := e.svc.Check(ctx, req)
		if err != nil || resp == nil {
			t.Fatalf("Check: %v, %v", resp, err)
		}
		ok := resp.GetOkResponse()
		if ok == nil {
			return
		}
		set := false
		for _, h := range ok.GetHeaders() {
			k, v := h.GetHeader().GetKey(), h.GetHeader().GetValue()
			switch {
			case k == wire.HeaderModel && v != "resnet":
				t.Fatalf("allowed model %q", v)
			case strings.Contains(v, wire.WSTokenProtocolPrefix) || strings.Contains(v, tok):
				t.Fatalf("header %s carries a credential", k)
			case k == wire.HeaderWSProtocol:
				set = v == wire.WSProtocol
			}
		}
		if !set && !slices.Contains(ok.GetHeadersToRemove(), wire.HeaderWSProtocol) {
			t.Fatalf("%s forwarded as sent", wire.HeaderWSProtocol)
		}
	})
}
