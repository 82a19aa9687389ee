package stack

// Jaeger, the stack's trace backend (Options.Tracing): Jaeger v2 (an
// OpenTelemetry Collector with Jaeger's storage and query extensions) built
// from tools/jaeger, memory storage, OTLP/gRPC in, the UI and the HTTP query
// API out. With tracing on, every daemon gets --otlp-endpoint to its OTLP
// port and the gateway config a tracing section naming it, so Envoy,
// helix-authz, helix-xds and the workers report one trace per request.
//
// Building Jaeger takes minutes, so make run does not wait for it
// (Options.JaegerLater): the first run starts without Jaeger, builds it in
// the background (BuildJaeger, logs/jaeger-build.log) once the stack serves,
// and starts it when the build is done; spans sent before are dropped.
// Later runs find the binary and start it with the rest.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/helixflow/helixflow/internal/atomicfile"
	"github.com/helixflow/helixflow/internal/supervise"
)

// Jaeger is the Jaeger process's name.
const Jaeger = "jaeger"

// JaegerPath is where scripts/deps.sh (jaeger_deps) builds Jaeger, relative
// to the repository root; the version is tools/jaeger/go.mod's.
const JaegerPath = ".tools/jaeger-v1.75.0/jaeger"

// JaegerEnv names a variable that overrides where Jaeger is found.
const JaegerEnv = "HELIX_JAEGER_BIN"

// JaegerMaxTraces is how many traces the stack's Jaeger keeps in memory.
const JaegerMaxTraces = 100000

// FindJaeger returns the Jaeger binary: $HELIX_JAEGER_BIN, else root/JaegerPath.
func FindJaeger(root string) (string, error) {
	if p := os.Getenv(JaegerEnv); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("stack: %s=%s is not an executable file", JaegerEnv, p)
	}
	p := filepath.Join(root, JaegerPath)
	if isExecutable(p) {
		return p, nil
	}
	return "", fmt.Errorf("stack: no Jaeger at %s (run `make jaeger` or `make deps`, which build it) and %s is not set", p, JaegerEnv)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// JaegerURL is Jaeger's UI and HTTP query API (/api/traces/{id},
// /api/services).
func (s *Stack) JaegerURL() string { return "http://" + Addr(s.Ports.JaegerUI) }

// OTLPEndpoint is Jaeger's OTLP/gRPC receiver, host:port.
func (s *Stack) OTLPEndpoint() string { return Addr(s.Ports.JaegerOTLP) }

// traceSampling is the gateway's sampling ratio (Options.TraceSampling).
func (s *Stack) traceSampling() float64 {
	if s.opts.TraceSampling == 0 {
		return 1
	}
	return s.opts.TraceSampling
}

// otlpArgs are the tracing flags of every daemon: spans to Jaeger in
// plaintext on loopback. Without Options.Tracing, none (tracing off).
func (s *Stack) otlpArgs() []string {
	if !s.opts.Tracing {
		return nil
	}
	return []string{"--otlp-endpoint=" + s.OTLPEndpoint(), "--otlp-plaintext-loopback"}
}

// tracingSection is the gateway config's tracing section (deploy/local/
// gateway.yaml's HELIX_TRACING placeholder): empty, tracing off, without
// Options.Tracing.
func (s *Stack) tracingSection() string {
	if !s.opts.Tracing {
		return ""
	}
	return fmt.Sprintf("tracing:\n  collector: %s\n  sampling: %s\n  service_name: helix-gateway\n",
		s.OTLPEndpoint(), strconv.FormatFloat(s.traceSampling(), 'f', -1, 64))
}

// JaegerPending says the stack runs with tracing but without Jaeger yet
// (Options.JaegerLater and no binary at Start): BuildJaeger builds and
// starts it.
func (s *Stack) JaegerPending() bool { return s.jaegerPending.Load() }

// jaeger is Jaeger on Dir/jaeger.yaml (deploy/local/jaeger.yaml with this
// stack's ports), ready once its query API answers.
func (s *Stack) jaeger() ([]supervise.Spec, error) {
	if !s.opts.Tracing {
		return nil, nil
	}
	bin := s.opts.JaegerBin
	if bin == "" {
		var err error
		if bin, err = FindJaeger(s.opts.Root); err != nil {
			if s.opts.JaegerLater {
				s.jaegerPending.Store(true)
				return nil, nil
			}
			return nil, err
		}
	}
	spec, err := s.jaegerSpec(bin)
	if err != nil {
		return nil, err
	}
	return []supervise.Spec{spec}, nil
}

func (s *Stack) jaegerSpec(bin string) (supervise.Spec, error) {
	const tmpl = "deploy/local/jaeger.yaml"
	b, err := os.ReadFile(filepath.Join(s.opts.Root, tmpl))
	if err != nil {
		return supervise.Spec{}, fmt.Errorf("stack: %w", err)
	}
	b, err = fillPlaceholders(tmpl, b, map[string]string{
		"HELIX_JAEGER_OTLP_PORT":  strconv.Itoa(s.Ports.JaegerOTLP),
		"HELIX_JAEGER_UI_PORT":    strconv.Itoa(s.Ports.JaegerUI),
		"HELIX_JAEGER_GRPC_PORT":  strconv.Itoa(s.Ports.JaegerGRPC),
		"HELIX_JAEGER_MAX_TRACES": strconv.Itoa(JaegerMaxTraces),
	})
	if err != nil {
		return supervise.Spec{}, err
	}
	path := filepath.Join(s.opts.Dir, "jaeger.yaml")
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return supervise.Spec{}, fmt.Errorf("stack: %w", err)
	}
	return supervise.Spec{
		Name: Jaeger, Path: bin, Args: []string{"--config=" + path},
		// The query API answers once the storage and the receivers are up.
		Ready: httpOK(plainClient, s.JaegerURL()+"/api/services"),
	}, nil
}

// BuildJaeger builds Jaeger (bash scripts/deps.sh jaeger, output in
// logs/jaeger-build.log) and starts it in the running stack: make run's
// first run, where JaegerPending. It returns when Jaeger is ready, the
// build failed, or ctx ended.
func (s *Stack) BuildJaeger(ctx context.Context) error {
	if !s.jaegerPending.Load() {
		return nil
	}
	logPath := filepath.Join(s.LogDir(), "jaeger-build.log")
	log, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	defer log.Close()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(s.opts.Root, "scripts", "deps.sh"), "jaeger")
	cmd.Dir, cmd.Stdout, cmd.Stderr = s.opts.Root, log, log
	// Its own process group, stopped whole when ctx ends: go build's
	// compilers must not outlive the stack.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("stack: building Jaeger (log: %s): %w", logPath, err)
	}
	bin, err := FindJaeger(s.opts.Root)
	if err != nil {
		return err
	}
	spec, err := s.jaegerSpec(bin)
	if err != nil {
		return err
	}
	s.opts.Logger.Info("jaeger built; starting it", "took", time.Since(start).Round(time.Second))
	if err := s.Run(ctx, spec); err != nil {
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	s.jaegerPending.Store(false)
	return nil
}
