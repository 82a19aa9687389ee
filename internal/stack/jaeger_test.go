package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.yaml.in/yaml/v3"

	"github.com/helixflow/helixflow/internal/pki"
	"github.com/helixflow/helixflow/internal/supervise"
	"github.com/helixflow/helixflow/internal/testdeps"
	"github.com/helixflow/helixflow/xds/config"
)

// With Tracing, the gateway config's tracing section names Jaeger's OTLP
// port with the stack's sampling, and helix-xds accepts the file; without
// it, there is no section (tracing off).
func TestLocalGatewayConfigTracing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     Options
		sampling float64 // 0: no section
	}{
		{"off", Options{}, 0},
		{"every request by default", Options{Tracing: true}, 1},
		{"a test's sampling", Options{Tracing: true, TraceSampling: 0.25}, 0.25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Root, tc.opts.Dir = "../..", t.TempDir()
			s, err := New(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.localGatewayConfig()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := config.Parse(b, s.ConfigPath()); err != nil {
				t.Fatalf("%v\n%s", err, b)
			}
			var doc struct {
				Tracing *struct {
					Collector   string  `yaml:"collector"`
					Sampling    float64 `yaml:"sampling"`
					ServiceName string  `yaml:"service_name"`
				} `yaml:"tracing"`
			}
			if err := yaml.Unmarshal(b, &doc); err != nil {
				t.Fatal(err)
			}
			if tc.sampling == 0 {
				if doc.Tracing != nil {
					t.Fatalf("tracing off, but the config has %+v", doc.Tracing)
				}
				return
			}
			if doc.Tracing == nil || doc.Tracing.Collector != s.OTLPEndpoint() || doc.Tracing.Sampling != tc.sampling || doc.Tracing.ServiceName != "helix-gateway" {
				t.Fatalf("tracing = %+v, want collector %s, sampling %v", doc.Tracing, s.OTLPEndpoint(), tc.sampling)
			}
		})
	}
}

// With Tracing, every daemon sends its spans to Jaeger in plaintext on
// loopback, and Jaeger starts before them; without it, none gets the flags.
func TestDaemonsSendSpansToJaeger(t *testing.T) {
	for _, tracing := range []bool{false, true} {
		s, err := New(Options{Root: "../..", Dir: t.TempDir(), AuthzReplicas: 1, Tracing: tracing, JaegerBin: "/bin/true"})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.issue(context.Background(), pki.LocalSpecs(), s.opts.Workers...); err != nil {
			t.Fatal(err)
		}
		var specs []supervise.Spec
		for _, f := range []func() ([]supervise.Spec, error){s.authz, s.xds, s.workers} {
			sp, err := f()
			if err != nil {
				t.Fatal(err)
			}
			specs = append(specs, sp...)
		}
		if len(specs) != 5 {
			t.Fatalf("%d daemons, want 2 helix-authz, helix-xds, 2 workers", len(specs))
		}
		want := []string{"--otlp-endpoint=127.0.0.1:" + strconv.Itoa(s.Ports.JaegerOTLP), "--otlp-plaintext-loopback"}
		for _, spec := range specs {
			for _, w := range want {
				if got := slices.Contains(spec.Args, w); got != tracing {
					t.Errorf("tracing %v: %s has %s: %v", tracing, spec.Name, w, got)
				}
			}
		}
		j, err := s.jaeger()
		if err != nil {
			t.Fatal(err)
		}
		if tracing != (len(j) == 1) {
			t.Errorf("tracing %v: jaeger specs %v", tracing, j)
		}
	}
	s, err := New(Options{Root: "../..", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	order := map[string]int{}
	for i, f := range s.description() {
		order[funcName(f)] = i
	}
	if order["jaeger"] > order["authz"] {
		t.Errorf("start order %v: want jaeger before the daemons", order)
	}
}

// A missing Jaeger is an error, unless JaegerLater (make run): then the
// stack goes on without it and BuildJaeger is pending.
func TestJaegerMissing(t *testing.T) {
	t.Setenv(JaegerEnv, "")
	root := t.TempDir()
	s, err := New(Options{Root: root, Dir: t.TempDir(), Tracing: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.jaeger(); err == nil || !strings.Contains(err.Error(), "make jaeger") {
		t.Fatalf("missing Jaeger: %v, want an error saying make jaeger", err)
	}
	s, err = New(Options{Root: root, Dir: t.TempDir(), Tracing: true, JaegerLater: true})
	if err != nil {
		t.Fatal(err)
	}
	if specs, err := s.jaeger(); err != nil || len(specs) != 0 || !s.JaegerPending() {
		t.Fatalf("JaegerLater: %v, %v, pending %v", specs, err, s.JaegerPending())
	}
	var b strings.Builder
	if err := s.PrintWelcome(&b, Demo{ID: "hxc_1"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "jaeger-build.log") || !strings.Contains(b.String(), s.JaegerURL()) {
		t.Errorf("welcome says nothing of the build:\n%s", b.String())
	}
}

// BuildJaeger runs scripts/deps.sh jaeger; a failed build is an error
// naming its log, and Jaeger stays pending.
func TestBuildJaegerFails(t *testing.T) {
	t.Setenv(JaegerEnv, "")
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "[ \"$1\" = jaeger ] && echo no Go here >&2; exit 1\n"
	if err := os.WriteFile(filepath.Join(root, "scripts", "deps.sh"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Root: root, Dir: t.TempDir(), Tracing: true, JaegerLater: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(s.LogDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := s.jaeger(); err != nil {
		t.Fatal(err)
	}
	err = s.BuildJaeger(context.Background())
	logPath := filepath.Join(s.LogDir(), "jaeger-build.log")
	if err == nil || !strings.Contains(err.Error(), logPath) || !s.JaegerPending() {
		t.Fatalf("BuildJaeger: %v (pending %v), want an error naming %s", err, s.JaegerPending(), logPath)
	}
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "no Go here") {
		t.Errorf("the build's log holds %q", b)
	}
}

// HELIX_JAEGER_URL is in local.env with tracing, absent without.
func TestLocalEnvJaegerURL(t *testing.T) {
	for _, tracing := range []bool{false, true} {
		dir := t.TempDir()
		s, err := New(Options{Root: ".", Dir: dir, Tracing: tracing})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.WriteLocalEnv(Demo{ID: "hxc_1", Secret: "s"}); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("sh", "-c", `. "$1" && printf '%s' "${HELIX_JAEGER_URL-unset}"`, "sh", filepath.Join(dir, "local.env")).Output()
		if err != nil {
			t.Fatal(err)
		}
		want := "unset"
		if tracing {
			want = s.JaegerURL()
		}
		if string(out) != want {
			t.Errorf("tracing %v: HELIX_JAEGER_URL=%q, want %q", tracing, out, want)
		}
	}
}

// The real Jaeger, from deploy/local/jaeger.yaml on the stack's ports:
// ready, it takes a span over OTLP/gRPC and shows it through its query API
// (what e2e's tracing test reads).
func TestJaegerTakesSpans(t *testing.T) {
	bin, err := FindJaeger("../..")
	if err != nil {
		testdeps.Missing(t, "%v", err)
		return
	}
	dir := t.TempDir()
	s, err := New(Options{Root: "../..", Dir: dir, Tracing: true})
	if err != nil {
		t.Fatal(err)
	}
	g, err := supervise.New(supervise.Options{LogDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.group = g
	t.Cleanup(g.Close)
	spec, err := s.jaegerSpec(bin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.Run(ctx, spec); err != nil {
		t.Fatal(err)
	}

	exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(s.OTLPEndpoint()), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	_, span := tp.Tracer("stack-test").Start(ctx, "hello")
	span.End()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	traceID := span.SpanContext().TraceID().String()
	var last string
	for ctx.Err() == nil {
		body, err := get(ctx, plainClient, s.JaegerURL()+"/api/traces/"+traceID)
		last = fmt.Sprint(body, err)
		if err == nil {
			var tr struct {
				Data []struct {
					Spans []struct {
						OperationName string `json:"operationName"`
					} `json:"spans"`
				} `json:"data"`
			}
			if json.Unmarshal([]byte(body), &tr) == nil && len(tr.Data) == 1 && len(tr.Data[0].Spans) == 1 && tr.Data[0].Spans[0].OperationName == "hello" {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(dir, Jaeger+".log"))
	t.Fatalf("trace %s not in Jaeger: %s\n%s", traceID, last, bytes.TrimSpace(log))
}

// funcName is a description entry's method name ("jaeger").
func funcName(f func() ([]supervise.Spec, error)) string {
	name := runtime.FuncForPC(reflect.ValueOf(f).Pointer()).Name() // pkg.(*Stack).jaeger-fm
	return strings.TrimSuffix(name[strings.LastIndex(name, ".")+1:], "-fm")
}
