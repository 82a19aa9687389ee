package gates

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/internal/testdeps"
)

// copyTree copies the files under src into dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// edit replaces old (which must be there) with new in the file.
func edit(t *testing.T, name, old, new string) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s lacks %q", name, old)
	}
	if err := os.WriteFile(name, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// apiTree is a repository root whose proto/ and api/ are the committed
// release copies: no breaks until the test makes one.
func apiTree(t *testing.T) (root, compat string) {
	t.Helper()
	compat = filepath.Join(repoRoot(t), "api", "compat")
	root = t.TempDir()
	copyTree(t, filepath.Join(compat, CompatProto), filepath.Join(root, "proto"))
	copyTree(t, filepath.Join(compat, CompatOpenAPI), filepath.Join(root, "api"))
	return root, compat
}

// A deliberately breaking change in a temporary copy, of a proto and of
// an OpenAPI file, is caught; declared, it passes; a declaration that
// matches nothing is stale.
func TestAPIGateCatchesBreaks(t *testing.T) {
	buf, oasdiff := tool(t, "buf"), tool(t, "oasdiff")
	ctx := context.Background()
	root, compat := apiTree(t)
	breaks, err := APIBreaks(ctx, buf, oasdiff, root, compat, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(breaks) != 0 {
		t.Fatalf("the release against itself: %v", breaks)
	}

	// A field deleted (and an addition, which is no break).
	edit(t, filepath.Join(root, "proto/grpc_service.proto"), "  string version = 2;\n}", "  string extra = 3;\n}")
	// A path removed, and an operation's success response gone.
	edit(t, filepath.Join(root, "api/inference.yaml"), "  /v2/health/live:", "  /v2/health/alive:")
	var warn strings.Builder
	breaks, err = APIBreaks(ctx, buf, oasdiff, root, compat, &warn)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range breaks {
		got = append(got, b.Tool+" "+b.File+" "+b.ID)
	}
	want := []string{
		"oasdiff api/inference.yaml api-path-removed-without-deprecation",
		"buf proto/grpc_service.proto FIELD_NO_DELETE",
	}
	if strings.Join(sorted(got), "\n") != strings.Join(sorted(want), "\n") {
		t.Fatalf("breaks:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, b := range breaks {
		if b.Tool == "buf" && !strings.Contains(b.Message, `"version" on message "ModelReadyRequest"`) {
			t.Errorf("buf's message %q does not name the field", b.Message)
		}
		if b.Tool == "oasdiff" && !strings.HasPrefix(b.Message, "GET /v2/health/live: ") {
			t.Errorf("oasdiff's message %q does not start with the operation", b.Message)
		}
	}

	accepted := []Accepted{
		{Tool: "buf", File: "proto/grpc_service.proto", ID: "FIELD_NO_DELETE", Text: `name "version"`, Reason: "test"},
		{Tool: "oasdiff", File: "api/inference.yaml", ID: "api-path-removed-without-deprecation", Text: "/v2/health/live", Reason: "test"},
	}
	if undeclared, stale := Settle(breaks, accepted); len(undeclared) != 0 || len(stale) != 0 {
		t.Errorf("all declared: undeclared %v, stale %v", undeclared, stale)
	}
	undeclared, stale := Settle(breaks, append(accepted[:1:1], Accepted{Tool: "oasdiff", File: "api/admin.yaml", ID: "api-path-removed-without-deprecation", Reason: "test"}))
	if len(undeclared) != 1 || undeclared[0].Tool != "oasdiff" || len(stale) != 1 || stale[0].File != "api/admin.yaml" {
		t.Errorf("one declared, one entry for another file: undeclared %v, stale %v", undeclared, stale)
	}
	// The text narrows the match: another field's deletion is not declared.
	if undeclared, _ := Settle(breaks[:0:0], nil); len(undeclared) != 0 {
		t.Error("nothing undeclared out of nothing")
	}
	other := []Accepted{{Tool: "buf", File: "proto/grpc_service.proto", ID: "FIELD_NO_DELETE", Text: `name "name"`, Reason: "test"}}
	if undeclared, _ := Settle(breaks, other); len(undeclared) != 2 {
		t.Errorf("another field's declaration covered this one: %v", undeclared)
	}

	// An OpenAPI file of the release that is gone is a break.
	if err := os.Remove(filepath.Join(root, "api/admin.yaml")); err != nil {
		t.Fatal(err)
	}
	breaks, err = APIBreaks(ctx, buf, oasdiff, root, compat, nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, b := range breaks {
		found = found || (b.File == "api/admin.yaml" && b.ID == "file-removed")
	}
	if !found {
		t.Errorf("a removed OpenAPI file is no break: %v", breaks)
	}

	// A proto that does not compile is an error, not a pass.
	edit(t, filepath.Join(root, "proto/grpc_service.proto"), "message ModelReadyRequest", "message ModelReadyRequest {{")
	if _, err := APIBreaks(ctx, buf, oasdiff, root, compat, nil); err == nil {
		t.Error("a broken proto passed")
	}
}

// The committed API is compatible with the committed release copies, or
// its breaks are all declared (the gate make gates runs).
func TestCommittedAPI(t *testing.T) {
	buf, oasdiff := tool(t, "buf"), tool(t, "oasdiff")
	root := repoRoot(t)
	compat := filepath.Join(root, "api", "compat")
	accepted, err := ReadAccepted(filepath.Join(compat, AcceptedBreaks))
	if err != nil {
		t.Fatal(err)
	}
	breaks, err := APIBreaks(context.Background(), buf, oasdiff, root, compat, nil)
	if err != nil {
		t.Fatal(err)
	}
	undeclared, stale := Settle(breaks, accepted)
	for _, b := range undeclared {
		t.Errorf("undeclared break: %s", b)
	}
	for _, a := range stale {
		t.Errorf("stale accepted entry: %+v", a)
	}
}

func TestReadAccepted(t *testing.T) {
	dir := t.TempDir()
	write := func(text string) string {
		p := filepath.Join(dir, "a.yaml")
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got, err := ReadAccepted(write("accepted:\n  - {tool: buf, file: proto/a.proto, id: FIELD_NO_DELETE, text: x, reason: why}\n"))
	if err != nil || len(got) != 1 || got[0].Reason != "why" {
		t.Fatalf("%+v %v", got, err)
	}
	if got, err := ReadAccepted(write("# nothing yet\n")); err != nil || len(got) != 0 {
		t.Errorf("comments only: %+v %v", got, err)
	}
	for _, tt := range []struct{ text, want string }{
		{"accepted:\n  - {tool: buf, file: a, id: X}\n", "lacks reason"},
		{"accepted:\n  - {tool: protolock, file: a, id: X, reason: r}\n", `tool "protolock"`},
		{"accepted:\n  - {tool: buf, file: a, id: X, reason: r, because: y}\n", "because"},
		{"accepted: {}\n", "cannot unmarshal"},
	} {
		if _, err := ReadAccepted(write(tt.text)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.text, err, tt.want)
		}
	}
	if _, err := ReadAccepted(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing file read")
	}
	// The header WriteCompat writes is a valid, empty list.
	if got, err := ReadAccepted(write(strings.ReplaceAll(acceptedHeader, "%s", "v1"))); err != nil || len(got) != 0 {
		t.Errorf("the written header: %+v %v", got, err)
	}
}

// WriteCompat copies a tag's protos and OpenAPI files (and only those)
// out of git, in a repository made here with its own tag.
func TestWriteCompat(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testdeps.Missing(t, "git not on PATH")
	}
	repo := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		cmd.Dir = repo
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	files := map[string]string{
		"proto/a.proto":           "syntax = \"proto3\";\n",
		"proto/x/v1/b.proto":      "syntax = \"proto3\";\n",
		"proto/x/v1/b.pb.go":      "package x\n",
		"api/openapi.yaml":        "openapi: 3.1.0\n",
		"api/compat/old.yaml":     "old\n",
		"docs/index.md":           "# docs\n",
		"proto/README.md":         "protos\n",
		"api/inference.yaml":      "openapi: 3.1.0 # v1\n",
		"api/sub/not-copied.yaml": "x\n",
	}
	for name, text := range files {
		if err := os.MkdirAll(filepath.Join(repo, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(repo, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("init", "-q")
	git("add", ".")
	git("commit", "-q", "-m", "release")
	git("tag", "-a", "v1.0.0", "-m", "v1.0.0")
	commit := git("rev-parse", "HEAD")
	// After the tag: changes WriteCompat must not see.
	if err := os.WriteFile(filepath.Join(repo, "api/inference.yaml"), []byte("openapi: 3.1.0 # v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("commit", "-q", "-am", "next")

	compat := filepath.Join(t.TempDir(), "compat")
	stalePath := filepath.Join(compat, CompatProto, "gone.proto")
	if err := os.MkdirAll(filepath.Dir(stalePath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stalePath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteCompat(context.Background(), repo, compat, "v1.0.0"); err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.WalkDir(compat, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(compat, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return err
	})
	want := []string{"RELEASE", "accepted-breaks.yaml", "openapi/inference.yaml", "openapi/openapi.yaml", "proto/a.proto", "proto/x/v1/b.proto"}
	if strings.Join(sorted(got), " ") != strings.Join(want, " ") {
		t.Errorf("files %v, want %v", sorted(got), want)
	}
	if data, _ := os.ReadFile(filepath.Join(compat, "openapi/inference.yaml")); string(data) != "openapi: 3.1.0 # v1\n" {
		t.Errorf("inference.yaml is not the tag's: %q", data)
	}
	if data, _ := os.ReadFile(filepath.Join(compat, CompatRelease)); string(data) != "v1.0.0 "+commit+"\n" {
		t.Errorf("RELEASE %q", data)
	}
	if acc, err := ReadAccepted(filepath.Join(compat, AcceptedBreaks)); err != nil || len(acc) != 0 {
		t.Errorf("accepted-breaks.yaml: %+v %v", acc, err)
	}
	if err := WriteCompat(context.Background(), repo, compat, "v9.9.9"); err == nil || !strings.Contains(err.Error(), "v9.9.9") {
		t.Errorf("a missing tag: %v", err)
	}
}
