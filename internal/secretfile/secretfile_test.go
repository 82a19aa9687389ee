package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HELIX_TEST_SECRET", "from-env")
	for _, tt := range []struct {
		name, file, env, want, err string
	}{
		{"file wins", file, "HELIX_TEST_SECRET", "s3cret", ""},
		{"environment", "", "HELIX_TEST_SECRET", "from-env", ""},
		{"neither", "", "", "", ""},
		{"missing file", filepath.Join(dir, "missing"), "HELIX_TEST_SECRET", "", "--token-file: open"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Read("--token-file", tt.file, tt.env)
			if got != tt.want || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("Read = %q, %v; want %q, error %q", got, err, tt.want, tt.err)
			}
		})
	}
}

func TestURLHoldsPassword(t *testing.T) {
	for dsn, want := range map[string]bool{
		"postgres://helix:s3cret@db:5432/helix":         true,
		"postgres://helix:@db/helix":                    true, // an empty password is still one
		"postgres://helix@db/helix?password=s3cret":     true,
		"host=db user=helix password=s3cret dbname=x":   true,
		"postgres://helix@db/helix?sslmode=verify-full": false,
		"host=/var/run/postgresql user=helix dbname=x":  false,
		"": false,
	} {
		if got := URLHoldsPassword(dsn); got != want {
			t.Errorf("URLHoldsPassword(%q) = %v, want %v", dsn, got, want)
		}
	}
}
