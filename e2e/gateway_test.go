package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/samplemodel"
	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/proto/inference"
	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
	"github.com/helixflow/helixflow/workers/registration"
	"github.com/helixflow/helixflow/xds/translate"
)

// TestGateway is one run of the whole stack; the subtests share it.
func TestGateway(t *testing.T) {
	parent := t
	s := startStack(t, stackOptions{})
	https := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: s.caPool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}}
	all, mlpOnly := s.clients["all"], s.clients["mlp-only"]

	// Convergence: the worker registered, helix-xds published its
	// endpoint, Envoy routes to it.
	waitFor(t, "first inference through Envoy", 30*time.Second, nil, func(ctx context.Context) error {
		code, body, err := s.restInfer(ctx, https, sampleModel, all.token, nil)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})

	t.Run("REST infer with a token", func(t *testing.T) {
		code, body, err := s.restInfer(context.Background(), https, sampleModel, all.token, nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("infer = %d %s (%v)", code, body, err)
		}
		checkRESTOutputs(t, body)
	})
	t.Run("REST without a token is 401", func(t *testing.T) {
		code, body, err := s.restInfer(context.Background(), https, sampleModel, "", nil)
		if err != nil || code != http.StatusUnauthorized {
			t.Fatalf("infer without token = %d %s (%v), want 401", code, body, err)
		}
	})
	t.Run("REST with a bad token is 401", func(t *testing.T) {
		code, body, err := s.restInfer(context.Background(), https, sampleModel, all.token[:len(all.token)-4]+"AAAA", nil)
		if err != nil || code != http.StatusUnauthorized {
			t.Fatalf("infer with a forged signature = %d %s (%v), want 401", code, body, err)
		}
	})
	t.Run("the public surface through Envoy: sign-up, token, portal", func(t *testing.T) {
		s.checkPublicSurface(t, https)
	})
	t.Run("a person's token infers, and is refused within 1 s of logout", func(t *testing.T) {
		s.checkPersonThroughGateway(t, https)
	})
	t.Run("REST with the wrong scope is 403", func(t *testing.T) {
		code, body, err := s.restInfer(context.Background(), https, sampleModel, mlpOnly.token, nil)
		if err != nil || code != http.StatusForbidden {
			t.Fatalf("infer on %s with models:mlp:infer = %d %s (%v), want 403", sampleModel, code, body, err)
		}
	})
	t.Run("forged x-helix headers have no effect", func(t *testing.T) {
		forged := map[string]string{
			wire.HeaderClient: all.id, wire.HeaderModel: "mlp", wire.HeaderPlan: "standard", wire.HeaderPrefix + "admin": "true",
		}
		// A client allowed only mlp stays denied on simple.
		code, body, err := s.restInfer(context.Background(), https, sampleModel, mlpOnly.token, forged)
		if err != nil || code != http.StatusForbidden {
			t.Fatalf("forged headers with the wrong scope = %d %s (%v), want 403", code, body, err)
		}
		// No token at all stays unauthenticated.
		code, body, err = s.restInfer(context.Background(), https, sampleModel, "", forged)
		if err != nil || code != http.StatusUnauthorized {
			t.Fatalf("forged headers without token = %d %s (%v), want 401", code, body, err)
		}
		// A good client is routed by its request, not by the forged model.
		code, body, err = s.restInfer(context.Background(), https, sampleModel, all.token, forged)
		if err != nil || code != http.StatusOK {
			t.Fatalf("forged headers with a good token = %d %s (%v), want 200", code, body, err)
		}
		checkRESTOutputs(t, body)
	})

	conn := s.grpcConn(t)
	infer := inference.NewGRPCInferenceServiceClient(conn)
	t.Run("gRPC ModelInfer with a token", func(t *testing.T) {
		resp, err := infer.ModelInfer(withToken(t, all.token), samplemodel.InferRequest())
		if err != nil {
			t.Fatalf("ModelInfer = %v", err)
		}
		checkGRPCOutputs(t, resp)
	})
	t.Run("gRPC without a token is UNAUTHENTICATED", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := infer.ModelInfer(ctx, samplemodel.InferRequest())
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("ModelInfer without token = %v, want Unauthenticated", err)
		}
	})
	t.Run("gRPC with the wrong scope and forged headers is PERMISSION_DENIED", func(t *testing.T) {
		ctx := metadata.AppendToOutgoingContext(withToken(t, mlpOnly.token),
			wire.HeaderModel, "mlp", wire.HeaderClient, all.id)
		_, err := infer.ModelInfer(ctx, samplemodel.InferRequest())
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("ModelInfer on %s with models:mlp:infer = %v, want PermissionDenied", sampleModel, err)
		}
	})

	t.Run("plans and models as a new user meets them", func(t *testing.T) { s.checkPlans(t, https) })

	t.Run("tritonclient gRPC and HTTPS through Envoy", func(t *testing.T) {
		s.runTritonClientCheck(t)
	})

	t.Run("only a worker's certificate registers a worker", func(t *testing.T) {
		// Envoy's client certificate comes from the same CA as the
		// workers': helix-xds refuses it, or it could draw traffic.
		tc, err := registration.LoadClientTLS(s.caFile, s.cfg.envoyClient.CertFile, s.cfg.envoyClient.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(s.xdsAddr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = registryv1.NewRegistryClient(conn).Register(ctx, &registryv1.RegisterRequest{
			WorkerId: "rogue", Address: "127.0.0.1", GrpcPort: 1, HttpPort: 2, Ready: true,
			Models: []*registryv1.Model{{Name: sampleModel, Versions: []string{"1"}, Ready: true}},
		})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("registering with Envoy's certificate: %v, want PERMISSION_DENIED", err)
		}
	})
	t.Run("each mTLS listener takes only the identities it serves", s.checkIdentities)
	t.Run("a worker that leaves is no longer routed to, and comes back", func(t *testing.T) {
		s.stopRegistration() // the worker deregisters
		waitFor(t, "503 once the only worker left", 10*time.Second, nil, func(ctx context.Context) error {
			code, body, err := s.restInfer(ctx, https, sampleModel, all.token, nil)
			if err != nil {
				return err
			}
			if code != http.StatusServiceUnavailable {
				return fmt.Errorf("%d %s", code, body)
			}
			return nil
		})
		start := time.Now()
		s.startRegistration(parent)
		waitFor(t, "routed again after registering", 15*time.Second, nil, func(ctx context.Context) error {
			code, body, err := s.restInfer(ctx, https, sampleModel, all.token, nil)
			if err != nil {
				return err
			}
			if code != http.StatusOK {
				return fmt.Errorf("%d %s", code, body)
			}
			return nil
		})
		t.Logf("registration to first routed request: %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("config file hot reload; a bad file keeps the last good config", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		origin := "https://e2e-reload.example"
		c := s.cfg
		c.corsOrigin = origin
		writeGatewayConfig(t, s.cfgPath, c)
		waitFor(t, "Envoy has the new CORS origin", 15*time.Second, nil, func(ctx context.Context) error {
			dump, err := s.envoy.Admin(ctx, "/config_dump")
			if err != nil {
				return err
			}
			if !strings.Contains(dump, "e2e-reload.example") {
				return fmt.Errorf("not in the config yet")
			}
			return nil
		})
		before, err := httpGet(ctx, http.DefaultClient, s.xdsURL+"/status")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(s.cfgPath, []byte("listener: [this is not a listener\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2500 * time.Millisecond) // more than one poll of the file and one debounce
		after, err := httpGet(ctx, http.DefaultClient, s.xdsURL+"/status")
		if err != nil {
			t.Fatal(err)
		}
		if v1, v2 := configVersion(t, before), configVersion(t, after); v1 != v2 {
			t.Fatalf("a bad config file changed the config version %s -> %s", v1, v2)
		}
		code, body, err := s.restInfer(ctx, https, sampleModel, all.token, nil)
		if err != nil || code != http.StatusOK {
			t.Fatalf("after a bad config file: %d %s (%v)", code, body, err)
		}
		writeGatewayConfig(t, s.cfgPath, s.cfg) // back to the original
	})

	s.testRateLimits(t, https)

	t.Run("Envoy took every config", func(t *testing.T) { s.checkNoRejectedConfig(t) })
}

// restInfer posts the simple model's request: INPUT0 = 0..15, INPUT1 = 1s.
func (s *stack) restInfer(ctx context.Context, c *http.Client, model, token string, headers map[string]string) (int, []byte, error) {
	in0, in1 := make([]int32, 16), make([]int32, 16)
	for i := range in0 {
		in0[i], in1[i] = int32(i), 1
	}
	body, _ := json.Marshal(map[string]any{"inputs": []map[string]any{
		{"name": "INPUT0", "shape": []int{1, 16}, "datatype": "INT32", "data": in0},
		{"name": "INPUT1", "shape": []int{1, 16}, "datatype": "INT32", "data": in1},
	}})
	return s.restPost(ctx, c, model, body, token, headers)
}

// restPost posts a KServe v2 JSON infer request for model to the gateway.
func (s *stack) restPost(ctx context.Context, c *http.Client, model string, body []byte, token string, headers map[string]string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+s.gateway+wire.RESTModelPath(model, "", "infer"), bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func checkRESTOutputs(t *testing.T, body []byte) {
	t.Helper()
	var r struct {
		ModelName string `json:"model_name"`
		Outputs   []struct {
			Name string  `json:"name"`
			Data []int32 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("response %s: %v", body, err)
	}
	if r.ModelName != sampleModel || len(r.Outputs) != 2 {
		t.Fatalf("response = %s", body)
	}
	for _, o := range r.Outputs {
		checkSimple(t, o.Name, o.Data)
	}
}

func checkSimple(t *testing.T, name string, got []int32) {
	t.Helper()
	if len(got) != 16 {
		t.Fatalf("%s has %d values, want 16", name, len(got))
	}
	for i, v := range got {
		want := int32(i) + 1 // OUTPUT0 = INPUT0 + INPUT1
		if name == "OUTPUT1" {
			want = int32(i) - 1 // OUTPUT1 = INPUT0 - INPUT1
		}
		if v != want {
			t.Fatalf("%s[%d] = %d, want %d", name, i, v, want)
		}
	}
}

func (s *stack) grpcConn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(s.gateway, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: s.caPool, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func withToken(t *testing.T, token string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func checkGRPCOutputs(t *testing.T, r *inference.ModelInferResponse) {
	t.Helper()
	if r.GetModelName() != sampleModel || len(r.GetOutputs()) != 2 || len(r.GetRawOutputContents()) != 2 {
		t.Fatalf("response = %v", r)
	}
	for i, o := range r.GetOutputs() {
		raw := r.GetRawOutputContents()[i]
		vals := make([]int32, len(raw)/4)
		for j := range vals {
			vals[j] = int32(binary.LittleEndian.Uint32(raw[4*j:]))
		}
		checkSimple(t, o.GetName(), vals)
	}
}

func configVersion(t *testing.T, status []byte) string {
	t.Helper()
	var st struct {
		Versions map[string]struct {
			Version string `json:"version"`
		} `json:"versions"`
	}
	if err := json.Unmarshal(status, &st); err != nil {
		t.Fatalf("helix-xds /status %s: %v", status, err)
	}
	return st.Versions["config"].Version
}

// checkNoRejectedConfig asserts that Envoy holds the dynamic resources
// helix-xds serves and rejected no update (update_rejected all 0, no NACK
// seen by the running helix-xds). Run it last: it covers the whole test.
func (s *stack) checkNoRejectedConfig(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dump, err := s.envoy.Admin(ctx, "/config_dump")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"dynamic_listeners"`, `"` + translate.ListenerName + `"`,
		`"dynamic_active_clusters"`, `"` + translate.ClusterAuthZ + `"`, `"` + translate.ClusterDefaultGRPC + `"`,
		`"dynamic_route_configs"`, `"` + translate.RouteConfigName + `"`,
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("/config_dump lacks %s", want)
		}
	}
	stats, err := s.envoy.Admin(ctx, "/stats?filter=update_(rejected|success)$")
	if err != nil {
		t.Fatal(err)
	}
	rejected, succeeded := 0, 0
	for _, m := range regexp.MustCompile(`(?m)^(\S+\.update_(rejected|success)): (\d+)$`).FindAllStringSubmatch(stats, -1) {
		n, _ := strconv.Atoi(m[3])
		if m[2] == "rejected" {
			rejected += n
			if n != 0 {
				t.Errorf("%s = %d", m[1], n)
			}
		} else {
			succeeded += n
		}
	}
	if succeeded == 0 {
		t.Fatalf("no update_success stat at all:\n%s", stats)
	}
	st, err := httpGet(ctx, http.DefaultClient, s.xdsURL+"/status")
	if err != nil {
		t.Fatal(err)
	}
	var xs struct {
		Nodes []struct {
			ID string `json:"id"`
		} `json:"nodes"`
		NACKs uint64 `json:"nacks_total"`
	}
	if err := json.Unmarshal(st, &xs); err != nil {
		t.Fatal(err)
	}
	// Envoy is helix-xds's only ADS client.
	ids := make([]string, 0, len(xs.Nodes))
	for _, n := range xs.Nodes {
		ids = append(ids, n.ID)
	}
	if xs.NACKs != 0 || !slices.Equal(ids, []string{"e2e-envoy"}) {
		t.Fatalf("helix-xds /status = %s", st)
	}
}
