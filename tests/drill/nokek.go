package main

// The same dump restored without the KEK: a second copy on the fresh
// server, and a helix-authz of its own with another KEK (as an operator
// who lost it would start one). Its own copy, because helix-authz with no
// usable key makes a new one there.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/helixflow/helixflow/internal/freeport"
	"github.com/helixflow/helixflow/internal/pgtest"
	helixstack "github.com/helixflow/helixflow/internal/stack"
	"github.com/helixflow/helixflow/internal/supervise"
)

const noKEKName = "helix-authz-nokek"

// noKEK returns what the restore without the KEK gives, in words, or an
// error when it gives more than it should (a pre-backup token that
// validates, an old key published).
func noKEK(ctx context.Context, s *state, srv *pgtest.Server, rolePassword string, tools pgTools, b *backup) (string, error) {
	dsn, err := newDatabase(ctx, srv.DSN(), restoredDB+"_nokek", rolePassword)
	if err != nil {
		return "", err
	}
	if err := restoreInto(ctx, tools, dsn, b); err != nil {
		return "", err
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	kek := filepath.Join(filepath.Dir(b.file), "another-kek")
	if err := os.WriteFile(kek, []byte(hex.EncodeToString(raw)+"\n"), 0o600); err != nil {
		return "", err
	}
	var ports [4]int
	for i := range ports {
		if ports[i], err = freeport.Pick(); err != nil {
			return "", err
		}
	}
	base := "http://" + helixstack.Addr(ports[0])
	spec := supervise.Spec{
		Name: noKEKName, Path: filepath.Join(s.st.Root(), "bin", "helix-authz"),
		Env: []string{"HELIX_DATABASE_URL=" + dsn},
		// The stack's issuer, so that only the keys tell the tokens apart.
		Args: []string{"--kek-file=" + kek, "--issuer=" + s.st.Issuer, "--plaintext-loopback",
			"--gateway-config=" + s.st.ConfigPath(), "--redis-address=" + helixstack.Addr(s.st.Ports.Redis),
			"--http-listen=" + helixstack.Addr(ports[0]), "--admin-listen=" + helixstack.Addr(ports[1]),
			"--grpc-listen=" + helixstack.Addr(ports[2]), "--metrics-listen=" + helixstack.Addr(ports[3])},
		Ready: func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/.well-known/jwks.json", nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("JWKS: HTTP %d", resp.StatusCode)
			}
			return nil
		},
	}
	if err := s.st.Run(ctx, spec); err != nil {
		return "", fmt.Errorf("helix-authz without the KEK did not start: %w", err)
	}
	defer s.st.StopProcess(noKEKName) //nolint:errcheck // the end of the drill
	log := filepath.Join(s.st.LogDir(), noKEKName+".log")
	// It logs each key it cannot open as it loads them, before it serves.
	unusable := len(unusableKids(log))
	kids, err := s.jwksKids(ctx, base)
	if err != nil {
		return "", err
	}
	var problems []string
	for _, k := range kids {
		if slices.Contains(s.kids, k) {
			problems = append(problems, "it publishes the backed-up key "+k)
		}
	}
	active := 0
	for _, t := range s.tokens {
		ok, err := s.introspect(ctx, base, t)
		if err != nil {
			return "", fmt.Errorf("introspection without the KEK: %w", err)
		}
		if ok {
			active++
		}
	}
	if active > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d pre-backup tokens still validate", active, len(s.tokens)))
	}
	if unusable < len(s.kids) {
		problems = append(problems, fmt.Sprintf("it logged %d signing keys unusable, want %d", unusable, len(s.kids)))
	}
	if len(problems) > 0 {
		return "", fmt.Errorf("restored without the KEK, helix-authz: %s", strings.Join(problems, "; "))
	}
	return fmt.Sprintf("a helix-authz started on it with another KEK logs each of the %d sealed signing keys unusable (%q), publishes none of them (it made a new one, %s), and 0 of %d pre-backup tokens validate (introspection active=false). Keep the KEK, apart from the dumps.",
		unusable, unusableError(log), strings.Join(kids, ", "), len(s.tokens)), nil
}

// logLine is what the drill reads of helix-authz's JSON log lines.
type logLine struct {
	Msg   string `json:"msg"`
	KID   string `json:"kid"`
	Error string `json:"error"`
}

// unusableKids are the kids helix-authz logged as "signing key unusable"
// (it logs them again at each reload).
func unusableKids(path string) []string {
	var kids []string
	for _, l := range logLines(path) {
		if l.Msg == "signing key unusable" && !slices.Contains(kids, l.KID) {
			kids = append(kids, l.KID)
		}
	}
	return kids
}

// unusableError is the error logged with the first unusable key.
func unusableError(path string) string {
	for _, l := range logLines(path) {
		if l.Msg == "signing key unusable" {
			return l.Error
		}
	}
	return ""
}

func logLines(path string) []logLine {
	b, _ := os.ReadFile(path)
	var out []logLine
	for l := range strings.Lines(string(b)) {
		var v logLine
		if json.Unmarshal([]byte(l), &v) == nil {
			out = append(out, v)
		}
	}
	return out
}
