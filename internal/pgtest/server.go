// Package pgtest starts private Postgres servers from the machine's
// PostgreSQL binaries (internal/pgbin): initdb into a folder of its own,
// listening only on 127.0.0.1 on a free port, with its unix socket in that
// folder. Tests use Start, StartShared and NewDatabase; the authz
// benchmark (bench/authz) uses StartProcess. `make run` and the e2e tests
// run Postgres under internal/stack instead, with the same binaries and
// user (internal/pgbin).
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/helixflow/helixflow/internal/freeport"
	"github.com/helixflow/helixflow/internal/pgbin"
)

// Superuser is the name of the bootstrap superuser of every server.
const Superuser = "postgres"

// Server is one running Postgres.
type Server struct {
	dir     string // base folder: data/, the socket, postgres.log, password
	dataDir string
	port    int
	pass    string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the postmaster has exited
	logPath string

	stopOnce sync.Once
	stopErr  error
}

// DSN is the URL of the server's "postgres" database as the superuser.
func (s *Server) DSN() string { return s.dsnFor("postgres") }

// Port is the TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// Dir is the folder StartProcess was given.
func (s *Server) Dir() string { return s.dir }

func (s *Server) dsnFor(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(Superuser, s.pass),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Stop shuts the server down, letting it finish in-flight work and write a
// checkpoint (a "fast" shutdown), so that a data folder used by StartProcess
// can be started again. It waits up to 30 s, then kills it.
func (s *Server) Stop() error { return s.stop(syscall.SIGINT, 30*time.Second) }

// Kill stops the server at once (an "immediate" shutdown, as
// `pg_ctl stop -m immediate`): the next start recovers from the WAL. Tests
// use it; it is also how a test makes the database vanish under a client.
func (s *Server) Kill() error { return s.stop(syscall.SIGQUIT, 10*time.Second) }

func (s *Server) stop(sig syscall.Signal, wait time.Duration) error {
	s.stopOnce.Do(func() {
		select {
		case <-s.done:
			return
		default:
		}
		if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			s.stopErr = fmt.Errorf("pgtest: signal postgres: %w", err)
			return
		}
		select {
		case <-s.done:
		case <-time.After(wait):
			_ = s.cmd.Process.Kill()
			<-s.done
			s.stopErr = fmt.Errorf("pgtest: postgres did not stop within %s; killed", wait)
		}
	})
	return s.stopErr
}

// StartProcess starts a Postgres whose files live under dir (created if
// missing): data/ (kept, and reused by the next StartProcess on the same
// dir), postgres.log, the password of the superuser, and the unix socket.
// The server listens on 127.0.0.1 on a free port and dies with the calling
// process. Run as root, it runs as the "postgres" system user (Postgres
// refuses root), and dir is handed to that user.
//
// The settings trade durability for speed (fsync off): it is for tests
// and benchmarks, never for data that matters.
func StartProcess(dir string) (*Server, error) {
	bin, err := pgbin.Find()
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	// Folders above dir stay traversable: the postgres user must reach it.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	owner, err := pgbin.User()
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if owner != nil {
		if err := pgbin.Reachable(dir, owner); err != nil {
			return nil, err
		}
		if err := os.Chown(dir, int(owner.Uid), int(owner.Gid)); err != nil {
			return nil, fmt.Errorf("pgtest: hand %s to the postgres user: %w", dir, err)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}

	s := &Server{
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "postgres.log"),
	}
	if err := s.initdb(bin, owner); err != nil {
		return nil, err
	}
	// A port chosen free may be taken before the server binds it: try a few.
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.port = port
		lastErr = s.start(bin, owner)
		if lastErr == nil {
			return s, nil
		}
		if !strings.Contains(lastErr.Error(), "could not bind") && !strings.Contains(lastErr.Error(), "already in use") {
			break
		}
	}
	return nil, lastErr
}

// initdb creates the cluster unless dataDir already holds one.
func (s *Server) initdb(bin pgbin.Binaries, owner *syscall.Credential) error {
	pwPath := filepath.Join(s.dir, "password")
	if _, err := os.Stat(filepath.Join(s.dataDir, "PG_VERSION")); err == nil {
		pw, err := os.ReadFile(pwPath)
		if err != nil {
			return fmt.Errorf("pgtest: existing cluster in %s without its password file: %w", s.dataDir, err)
		}
		s.pass = strings.TrimSpace(string(pw))
		return nil
	}
	// A password, so that other local users cannot reach the database
	// through 127.0.0.1; the socket's folder is private to its owner.
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	s.pass = hex.EncodeToString(b[:])
	if err := writeOwned(pwPath, []byte(s.pass+"\n"), owner); err != nil {
		return err
	}
	cmd := exec.Command(bin.Initdb,
		"--pgdata="+s.dataDir,
		"--username="+Superuser,
		"--pwfile="+pwPath,
		"--auth-host=scram-sha-256",
		"--auth-local=trust",
		"--encoding=UTF8",
		"--no-locale",
		"--no-sync",
	)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: owner, Pdeathsig: syscall.SIGKILL}
	cmd.Env = pgEnv()
	cmd.Dir = s.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, tail(out, 2000))
	}
	// Our settings go last so that they win over initdb's.
	conf := strings.Join([]string{
		"listen_addresses = '127.0.0.1'",
		"fsync = off",
		"synchronous_commit = off",
		"full_page_writes = off",
		"max_connections = 200",
		"shared_buffers = 32MB",
		"log_min_messages = warning",
		"log_statement = none",
		"",
	}, "\n")
	f, err := os.OpenFile(filepath.Join(s.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	_, werr := f.WriteString("\n# pgtest\n" + conf)
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("pgtest: write postgresql.conf: %w", err)
	}
	return nil
}

// start runs the postmaster and waits until it accepts connections.
func (s *Server) start(bin pgbin.Binaries, owner *syscall.Credential) error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	if owner != nil {
		_ = logf.Chown(int(owner.Uid), int(owner.Gid))
	}
	logStart, _ := logf.Seek(0, 2)
	// The socket path must fit in sun_path (107 bytes); where dir is too
	// deep, TCP alone serves.
	sockDir := s.dir
	if len(sockDir)+len("/.s.PGSQL.65535") > 107 {
		sockDir = ""
	}
	cmd := exec.Command(bin.Postgres,
		"-D", s.dataDir,
		"-p", strconv.Itoa(s.port),
		"-c", "unix_socket_directories="+sockDir,
		"-c", "listen_addresses=127.0.0.1",
	)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = pgEnv()
	cmd.Dir = s.dir
	// Pdeathsig: a test binary that dies (panic, timeout, kill -9) takes
	// its server with it instead of leaving it running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: owner, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(s.done)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		err := ping(ctx, s.DSN())
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("pgtest: postgres exited during start:\n%s", s.logSince(logStart))
		case <-ctx.Done():
			_ = s.Kill()
			return fmt.Errorf("pgtest: postgres not ready within 60s: %v\n%s", err, s.logSince(logStart))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func ping(ctx context.Context, dsn string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

func (s *Server) logSince(off int64) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if off >= 0 && off <= int64(len(b)) {
		b = b[off:]
	}
	return tail(b, 4000)
}

// CreateDatabase creates database name (quoted, so any name is safe) on the
// server at dsn and returns the DSN of the new database.
func CreateDatabase(ctx context.Context, dsn, name string) (string, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", fmt.Errorf("pgtest: connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database: %w", err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("pgtest: parse dsn: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// DropDatabase drops database name on the server at dsn, closing its
// sessions first.
func DropDatabase(ctx context.Context, dsn, name string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("pgtest: connect: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgtest: drop database: %w", err)
	}
	return nil
}

func freePort() (int, error) {
	port, err := freeport.Pick()
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	return port, nil
}

// pgEnv is the environment for Postgres programs: ours minus PG* settings
// that would point them elsewhere, in the C locale.
func pgEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "LANG=C")
}

func writeOwned(path string, data []byte, owner *syscall.Credential) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	if owner != nil {
		if err := os.Chown(path, int(owner.Uid), int(owner.Gid)); err != nil {
			return fmt.Errorf("pgtest: %w", err)
		}
	}
	return nil
}

func tail(b []byte, n int) string {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
