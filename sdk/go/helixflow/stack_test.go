//go:build stack

package helixflow_test

// Tests against the running stack (tests/stackd, or `make run`), built only
// with the tag `stack` (go test -tags=stack): HELIX_STACK_ENV must name the
// stack's local.env, and a missing one fails the tests.
// tests/sdk/test_sdk_go.py runs them so.
// The tests make their own clients through the admin API (HELIX_ADMIN_URL,
// HELIX_ADMIN_TOKEN) and delete them when done.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helixflow/helixflow/sdk/go/helixflow"
	"github.com/helixflow/helixflow/sdk/go/inference"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// tokenLifetime is the stack's token lifetime (tests/helixstack.py).
const tokenLifetime = 20 * time.Second

// stackEnv reads HELIX_STACK_ENV's local.env (lines `export NAME=value`,
// the value possibly single- or double-quoted).
func stackEnv(t *testing.T) map[string]string {
	t.Helper()
	path := os.Getenv("HELIX_STACK_ENV")
	if path == "" {
		t.Fatal("HELIX_STACK_ENV is not set: the SDK's stack tests need the stack's local.env (tests/sdk/test_sdk_go.py sets it)")
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("HELIX_STACK_ENV: %v", err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			continue
		}
		name, value, _ := strings.Cut(line, "=")
		if len(value) >= 2 && (value[0] == '\'' || value[0] == '"') && value[len(value)-1] == value[0] {
			value = value[1 : len(value)-1]
		}
		env[name] = value
	}
	for _, k := range []string{"HELIX_GRPC_ADDR", "HELIX_HTTPS_URL", "HELIX_CA_FILE", "HELIX_TOKEN_URL", "HELIX_CLIENT_ID", "HELIX_CLIENT_SECRET", "HELIX_ADMIN_URL", "HELIX_ADMIN_TOKEN"} {
		if env[k] == "" {
			t.Fatalf("%s has no %s", path, k)
		}
	}
	return env
}

// admin calls the admin API; out (when not nil) receives the JSON answer.
func admin(t *testing.T, env map[string]string, method, path string, body, out any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, env["HELIX_ADMIN_URL"]+path, rd)
	req.Header.Set("Authorization", "Bearer "+env["HELIX_ADMIN_TOKEN"])
	req.Header.Set("Helix-Operator", "sdk-go-tests")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&e)
		t.Fatalf("admin %s %s: %d %v", method, path, resp.StatusCode, e)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("admin %s %s: %v", method, path, err)
		}
	}
}

type testClient struct{ ID, Secret string }

// newStackClient creates a client of plan with models:infer and
// models:read on every model, deleted when the test ends.
func newStackClient(t *testing.T, env map[string]string, plan string) testClient {
	t.Helper()
	var c struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	admin(t, env, http.MethodPost, "/admin/v1/clients", map[string]any{
		"name":   "sdk-go-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())),
		"scopes": []string{"models:infer", "models:read"}, "models": []string{"*"}, "plan": plan,
	}, &c)
	t.Cleanup(func() { admin(t, env, http.MethodDelete, "/admin/v1/clients/"+c.ID, nil, nil) })
	return testClient{c.ID, c.Secret}
}

func dialStack(t *testing.T, env map[string]string, creds helixflow.Credentials, opts ...grpc.DialOption) *helixflow.Client {
	t.Helper()
	c, err := helixflow.NewClient(env["HELIX_GRPC_ADDR"], helixflow.Options{
		Credentials: creds, CAFile: env["HELIX_CA_FILE"], RESTURL: env["HELIX_HTTPS_URL"], DialOptions: opts,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func clientCreds(t *testing.T, env map[string]string, id, secret string, hc *http.Client) helixflow.Credentials {
	t.Helper()
	creds, err := helixflow.NewClientCredentials(helixflow.ClientCredentialsConfig{
		ClientID: id, ClientSecret: secret, TokenURL: env["HELIX_TOKEN_URL"], CAFile: env["HELIX_CA_FILE"], HTTPClient: hc,
	})
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

// inferSimple sends model simple's two INT32 [1,16] inputs and checks its
// sum (OUTPUT0) and difference (OUTPUT1).
func inferSimple(ctx context.Context, c *helixflow.Client) error {
	a, b := make([]int32, 16), make([]int32, 16)
	for i := range a {
		a[i], b[i] = int32(i), int32(2*i+1)
	}
	req := &inference.ModelInferRequest{ModelName: "simple"}
	if err := helixflow.AddInput(req, "INPUT0", []int64{1, 16}, a); err != nil {
		return err
	}
	if err := helixflow.AddInput(req, "INPUT1", []int64{1, 16}, b); err != nil {
		return err
	}
	resp, err := c.Inference.ModelInfer(ctx, req)
	if err != nil {
		return err
	}
	sum, shape, err := helixflow.Output[int32](resp, "OUTPUT0")
	if err != nil {
		return err
	}
	diff, _, err := helixflow.Output[int32](resp, "OUTPUT1")
	if err != nil {
		return err
	}
	for i := range a {
		if sum[i] != a[i]+b[i] || diff[i] != a[i]-b[i] {
			return fmt.Errorf("element %d: sum %d diff %d, want %d %d", i, sum[i], diff[i], a[i]+b[i], a[i]-b[i])
		}
	}
	if !reflect.DeepEqual(shape, []int64{1, 16}) {
		return fmt.Errorf("OUTPUT0 shape %v", shape)
	}
	return nil
}

func TestStackModelInferSimple(t *testing.T) {
	env := stackEnv(t)
	t.Parallel()
	c := dialStack(t, env, clientCreds(t, env, env["HELIX_CLIENT_ID"], env["HELIX_CLIENT_SECRET"], nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := inferSimple(ctx, c); err != nil {
		t.Fatal(err)
	}
}

// TestStackEveryDatatype sends every numeric datatype (FP16 and BF16 as
// raw bits) through identity_all and reads each back bit for bit.
func TestStackEveryDatatype(t *testing.T) {
	env := stackEnv(t)
	t.Parallel()
	c := dialStack(t, env, clientCreds(t, env, env["HELIX_CLIENT_ID"], env["HELIX_CLIENT_SECRET"], nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := &inference.ModelInferRequest{ModelName: "identity_all"}
	shape := []int64{3}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(helixflow.AddInput(req, "IN_BOOL", shape, []bool{true, false, true}))
	must(helixflow.AddInput(req, "IN_INT8", shape, []int8{-128, 0, 127}))
	must(helixflow.AddInput(req, "IN_INT16", shape, []int16{-32768, 1, 32767}))
	must(helixflow.AddInput(req, "IN_INT32", shape, []int32{-1 << 31, 2, 1<<31 - 1}))
	must(helixflow.AddInput(req, "IN_INT64", shape, []int64{-1 << 63, 3, 1<<63 - 1}))
	must(helixflow.AddInput(req, "IN_UINT8", shape, []uint8{0, 1, 255}))
	must(helixflow.AddInput(req, "IN_UINT16", shape, []uint16{0, 1, 65535}))
	must(helixflow.AddInput(req, "IN_UINT32", shape, []uint32{0, 1, 1<<32 - 1}))
	must(helixflow.AddInput(req, "IN_UINT64", shape, []uint64{0, 1, 1<<64 - 1}))
	fp16 := []helixflow.Float16{helixflow.Float16FromFloat32(1.5), helixflow.Float16FromFloat32(-2), helixflow.Float16FromFloat32(65504)}
	must(helixflow.AddInput(req, "IN_FP16", shape, fp16))
	must(helixflow.AddInput(req, "IN_FP32", shape, []float32{1.5, -2, 3.25}))
	must(helixflow.AddInput(req, "IN_FP64", shape, []float64{1.5, -2, 1e300}))
	bf16 := []helixflow.BFloat16{helixflow.BFloat16FromFloat32(1.5), helixflow.BFloat16FromFloat32(-2), helixflow.BFloat16FromFloat32(3.140625)}
	must(helixflow.AddInput(req, "IN_BF16", shape, bf16))
	// BYTES is no Element: its raw form is each element's 4-byte length, then its bytes.
	var bytesRaw []byte
	for _, s := range []string{"a", "", "héllo"} {
		bytesRaw = binary.LittleEndian.AppendUint32(bytesRaw, uint32(len(s)))
		bytesRaw = append(bytesRaw, s...)
	}
	req.Inputs = append(req.Inputs, &inference.ModelInferRequest_InferInputTensor{Name: "IN_BYTES", Datatype: "BYTES", Shape: shape})
	req.RawInputContents = append(req.RawInputContents, bytesRaw)

	resp, err := c.Inference.ModelInfer(ctx, req)
	must(err)
	check := func(name string, got any, err error, want any) {
		t.Helper()
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, %v; want %v", name, got, err, want)
		}
	}
	g1, _, err := helixflow.Output[bool](resp, "OUT_BOOL")
	check("BOOL", g1, err, []bool{true, false, true})
	g2, _, err := helixflow.Output[int8](resp, "OUT_INT8")
	check("INT8", g2, err, []int8{-128, 0, 127})
	g3, _, err := helixflow.Output[int16](resp, "OUT_INT16")
	check("INT16", g3, err, []int16{-32768, 1, 32767})
	g4, _, err := helixflow.Output[int32](resp, "OUT_INT32")
	check("INT32", g4, err, []int32{-1 << 31, 2, 1<<31 - 1})
	g5, _, err := helixflow.Output[int64](resp, "OUT_INT64")
	check("INT64", g5, err, []int64{-1 << 63, 3, 1<<63 - 1})
	g6, _, err := helixflow.Output[uint8](resp, "OUT_UINT8")
	check("UINT8", g6, err, []uint8{0, 1, 255})
	g7, _, err := helixflow.Output[uint16](resp, "OUT_UINT16")
	check("UINT16", g7, err, []uint16{0, 1, 65535})
	g8, _, err := helixflow.Output[uint32](resp, "OUT_UINT32")
	check("UINT32", g8, err, []uint32{0, 1, 1<<32 - 1})
	g9, _, err := helixflow.Output[uint64](resp, "OUT_UINT64")
	check("UINT64", g9, err, []uint64{0, 1, 1<<64 - 1})
	g10, _, err := helixflow.Output[helixflow.Float16](resp, "OUT_FP16")
	check("FP16", g10, err, fp16)
	g11, _, err := helixflow.Output[float32](resp, "OUT_FP32")
	check("FP32", g11, err, []float32{1.5, -2, 3.25})
	g12, _, err := helixflow.Output[float64](resp, "OUT_FP64")
	check("FP64", g12, err, []float64{1.5, -2, 1e300})
	g13, _, err := helixflow.Output[helixflow.BFloat16](resp, "OUT_BF16")
	check("BF16", g13, err, bf16)
}

// countingTransport counts the token endpoint's answers.
type countingTransport struct {
	base http.RoundTripper
	n    atomic.Int32
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

// TestStackLongJobNeverUnauthenticated runs ModelInfer for longer than two
// token lifetimes: the credentials refresh the token before it expires,
// so not one call is refused UNAUTHENTICATED.
func TestStackLongJobNeverUnauthenticated(t *testing.T) {
	env := stackEnv(t)
	t.Parallel()
	tc := newStackClient(t, env, "standard")
	hc := &http.Client{Transport: &http.Transport{}}
	ct := &countingTransport{base: tlsTransport(t, env["HELIX_CA_FILE"])}
	hc.Transport = ct
	c := dialStack(t, env, clientCreds(t, env, tc.ID, tc.Secret, hc))
	ctx, cancel := context.WithTimeout(context.Background(), 2*tokenLifetime+30*time.Second)
	defer cancel()
	deadline := time.Now().Add(2*tokenLifetime + 3*time.Second)
	calls, failures := 0, map[codes.Code]int{}
	for time.Now().Before(deadline) {
		calls++
		if err := inferSimple(ctx, c); err != nil {
			failures[status.Code(err)]++
			t.Logf("call %d: %v", calls, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(failures) > 0 {
		t.Fatalf("%d calls over %v, failures by code: %v", calls, 2*tokenLifetime, failures)
	}
	// 43 s of 20 s tokens replaced 10 s early: at least 4 tokens.
	if n := ct.n.Load(); n < 3 {
		t.Fatalf("%d tokens fetched in %v of %v tokens: the token was not refreshed", n, 2*tokenLifetime, tokenLifetime)
	}
	t.Logf("%d calls, %d tokens fetched", calls, ct.n.Load())
}

// TestStackFreePlanRetriedToSuccess: a free-plan client (5 requests/s)
// sends 15 at once; the gateway refuses most with RESOURCE_EXHAUSTED and
// its x-ratelimit-reset, and the retry policy gets every one through.
func TestStackFreePlanRetriedToSuccess(t *testing.T) {
	env := stackEnv(t)
	t.Parallel()
	tc := newStackClient(t, env, "free")
	var exhausted, withReset atomic.Int32
	// Inside the SDK's retry interceptor: sees every attempt.
	attempts := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		var hdr, tr metadata.MD
		err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Header(&hdr), grpc.Trailer(&tr))...)
		if status.Code(err) == codes.ResourceExhausted {
			exhausted.Add(1)
			if len(tr.Get(helixflow.RateLimitResetHeader))+len(hdr.Get(helixflow.RateLimitResetHeader)) > 0 {
				withReset.Add(1)
			}
		}
		return err
	})
	c := dialStack(t, env, clientCreds(t, env, tc.ID, tc.Secret, nil), attempts)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 15)
	for range 15 {
		wg.Go(func() {
			if err := inferSimple(ctx, c); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("not retried to success: %v", err)
	}
	if exhausted.Load() == 0 {
		t.Fatal("no attempt was refused RESOURCE_EXHAUSTED: the free plan was not exercised")
	}
	if withReset.Load() != exhausted.Load() {
		t.Errorf("%d of %d refusals carried x-ratelimit-reset", withReset.Load(), exhausted.Load())
	}
	t.Logf("%d attempts refused RESOURCE_EXHAUSTED, all retried to success", exhausted.Load())
}

func TestStackAPIKey(t *testing.T) {
	env := stackEnv(t)
	t.Parallel()
	tc := newStackClient(t, env, "standard")
	var k struct {
		Key string `json:"key"`
	}
	admin(t, env, http.MethodPost, "/admin/v1/apikeys", map[string]any{"client_id": tc.ID, "name": "sdk-go"}, &k)
	key, err := helixflow.NewAPIKey(k.Key)
	if err != nil {
		t.Fatal(err)
	}
	c := dialStack(t, env, key)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := inferSimple(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Model(ctx, "simple"); err != nil {
		t.Fatalf("catalogue with an API key: %v", err)
	}
	bad, _ := helixflow.NewAPIKey("hx_not-a-key")
	if err := inferSimple(ctx, dialStack(t, env, bad)); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a wrong key: %v, want UNAUTHENTICATED", err)
	}
}

func TestStackCatalogue(t *testing.T) {
	env := stackEnv(t)
	t.Parallel()
	c := dialStack(t, env, clientCreds(t, env, env["HELIX_CLIENT_ID"], env["HELIX_CLIENT_SECRET"], nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	models, err := c.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var simple *helixflow.Model
	for i := range models {
		if models[i].Name == "simple" {
			simple = &models[i]
		}
	}
	if simple == nil {
		t.Fatalf("simple is not in the catalogue: %+v", models)
	}
	want := []helixflow.TensorInfo{{Name: "INPUT0", Datatype: "INT32", Shape: []int64{16}}, {Name: "INPUT1", Datatype: "INT32", Shape: []int64{16}}}
	if !simple.Ready || !reflect.DeepEqual(simple.Inputs, want) || simple.MaxBatchSize != 8 {
		t.Fatalf("simple: %+v", simple)
	}
	one, err := c.Model(ctx, "simple")
	if err != nil || one.Name != "simple" {
		t.Fatalf("Model(simple): %+v, %v", one, err)
	}
	if _, err := c.Model(ctx, "no-such-model"); !errors.Is(err, helixflow.ErrNotFound) {
		t.Fatalf("Model(no-such-model): %v, want ErrNotFound", err)
	}
}

// TestStackUsage: a new client's requests show in its own usage report
// once the workers have flushed their counts (every 10 s).
func TestStackUsage(t *testing.T) {
	env := stackEnv(t)
	t.Parallel()
	tc := newStackClient(t, env, "standard")
	c := dialStack(t, env, clientCreds(t, env, tc.ID, tc.Secret, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for range 3 {
		if err := inferSimple(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for {
		u, err := c.Usage(ctx, helixflow.UsageQuery{Model: "simple", Granularity: "day"})
		if err != nil {
			t.Fatal(err)
		}
		if u.Totals.Requests >= 3 {
			if len(u.Rows) == 0 || u.Rows[0].ClientID != tc.ID || u.Rows[0].Model != "simple" {
				t.Fatalf("rows %+v", u.Rows)
			}
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("usage still %+v", u.Totals)
		case <-time.After(time.Second):
		}
	}
}
