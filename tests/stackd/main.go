// Command stackd runs the stack the Python suites drive (tests/helixstack.py;
// internal/stack: Postgres, Redis, mailpit, helix-authz, helix-xds, Envoy and
// two helix-workers serving every sample model), writes what the tests need
// to reach it as JSON and as the local.env a `make run` user sources, and
// serves a loopback control API through which a test stops and starts a
// process (a worker's drain). It runs until SIGTERM or SIGINT.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/helixflow/helixflow/internal/atomicfile"
	"github.com/helixflow/helixflow/internal/stack"
)

// Info is the JSON the tests read (tests/helixstack.py).
type Info struct {
	Gateway    string         `json:"gateway"` // host:port of Envoy's TLS listener
	CAFile     string         `json:"ca_file"`
	TokenURL   string         `json:"token_url"`
	Issuer     string         `json:"issuer"`
	AdminURL   string         `json:"admin_url"`
	AdminToken string         `json:"admin_token"`
	MailpitURL string         `json:"mailpit_url"`
	EnvFile    string         `json:"env_file"` // local.env, as make run writes it (stack.WriteLocalEnv)
	Control    string         `json:"control"`  // http://host:port of this process's control API
	Workers    []string       `json:"workers"`
	PIDs       map[string]int `json:"pids"`
	LogDir     string         `json:"log_dir"`
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("stackd", flag.ContinueOnError)
	root := fs.String("root", ".", "the repository (bin/, models/, deploy/local/gateway.yaml)")
	dir := fs.String("dir", "", "state folder (required; must be reachable by the postgres user)")
	out := fs.String("out", "", "where to write the JSON description (required)")
	tokenLifetime := fs.Duration("token-lifetime", 0, "helix-authz --token-lifetime (0: its default)")
	workerArgs := fs.String("worker-args", "", "extra flags for every helix-worker, space separated")
	binDir := fs.String("bin-dir", "", "helix-authz, helix-xds and helix-worker (default ROOT/bin)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "stackd: --dir and --out are required")
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, log, *root, *dir, *binDir, *out, *tokenLifetime, *workerArgs); err != nil {
		fmt.Fprintln(os.Stderr, "stackd:", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, log *slog.Logger, root, dir, binDir, out string, tokenLifetime time.Duration, workerArgs string) error {
	opts := stack.Options{Root: root, Dir: dir, BinDir: binDir, Logger: log, Workers: stack.DefaultWorkers(), Args: map[string][]string{}}
	if tokenLifetime > 0 {
		opts.Args[stack.Authz] = []string{"--token-lifetime=" + tokenLifetime.String()}
	}
	if workerArgs != "" {
		for i := range opts.Workers {
			opts.Workers[i].Args = strings.Fields(workerArgs)
		}
	}
	s, err := stack.New(opts)
	if err != nil {
		return err
	}
	defer s.Close()
	sctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	if err := s.Start(sctx); err != nil {
		return err
	}
	demo, err := s.DemoClient(sctx)
	if err != nil {
		return err
	}
	tok, err := s.Token(sctx, demo.ID, demo.Secret)
	if err != nil {
		return err
	}
	if err := s.WaitServing(sctx, tok.AccessToken); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	if err := s.WriteLocalEnv(demo); err != nil {
		return err
	}
	info := Info{Gateway: s.GatewayAddr(), CAFile: s.CAFile(), TokenURL: s.TokenURL(), Issuer: s.Issuer,
		AdminURL: s.AdminURL(), AdminToken: s.AdminToken, MailpitURL: s.MailpitURL,
		EnvFile: filepath.Join(dir, "local.env"), Control: "http://" + ln.Addr().String(), LogDir: s.LogDir(), PIDs: map[string]int{}}
	for _, w := range s.Workers() {
		info.Workers = append(info.Workers, w.Name)
	}
	srv := &http.Server{Handler: control(s), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	b, _ := json.MarshalIndent(info, "", "  ")
	if err := atomicfile.Write(out, b, 0o600); err != nil {
		return err
	}
	log.Info("stackd: serving", "info", out, "gateway", info.Gateway)
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.Failed():
		return err
	}
}

// control: POST /stop?name=P (SIGTERM, waits for the exit: a worker
// drains), POST /start?name=P (waits until ready), GET /pids.
func control(s *stack.Stack) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		reply(w, s.StopProcess(r.URL.Query().Get("name")))
	})
	mux.HandleFunc("POST /start", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
		defer cancel()
		reply(w, s.StartProcess(ctx, r.URL.Query().Get("name")))
	})
	mux.HandleFunc("GET /pids", func(w http.ResponseWriter, r *http.Request) {
		pids := map[string]int{}
		for _, p := range s.Procs() {
			if !p.Exited() {
				pids[p.Name()] = p.PID()
			}
		}
		json.NewEncoder(w).Encode(pids)
	})
	return mux
}

func reply(w http.ResponseWriter, err error) {
	if err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
