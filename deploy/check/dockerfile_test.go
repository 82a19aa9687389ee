package check

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const imagesDir = "../images"

// TestDockerfiles checks every Dockerfile in deploy/images, and that each
// binary under cmd/ has one (plus the CUDA worker).
func TestDockerfiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(imagesDir, "*.Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var images []string
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range Dockerfile(filepath.Base(f), src) {
			t.Error(err)
		}
		images = append(images, strings.TrimSuffix(filepath.Base(f), ".Dockerfile"))
	}
	cmds, err := os.ReadDir(filepath.Join(repoRoot, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"helix-worker-cuda"}
	// Commands that only run on a developer's machine have no image.
	devOnly := map[string]bool{
		"helix-stack": true, // make run's launcher: starts the whole stack as local processes
	}
	for _, c := range cmds {
		if c.IsDir() && !devOnly[c.Name()] {
			want = append(want, c.Name())
		}
	}
	for _, w := range want {
		if !slices.Contains(images, w) {
			t.Errorf("no deploy/images/%s.Dockerfile", w)
		}
	}
	src, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range DockerIgnore(src) {
		t.Error(err)
	}
}

// TestDockerfileRules feeds the checker Dockerfiles that break each rule.
func TestDockerfileRules(t *testing.T) {
	const pinned = "ARG BASE=gcr.io/distroless/static-debian12:nonroot@sha256:" + "d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639\n"
	good := pinned + "FROM ${BASE}\nCOPY x /x\nUSER 65532:65532\nENTRYPOINT [\"/x\"]\n"
	if errs := Dockerfile("good", []byte(good)); len(errs) > 0 {
		t.Fatalf("a good Dockerfile fails: %v", errs)
	}
	cases := []struct{ name, src, want string }{
		{"unpinned from", "FROM golang:1.26\nUSER 1\nENTRYPOINT [\"/x\"]\n", "through an ARG"},
		{"arg without digest", "ARG BASE=golang:1.26\nFROM ${BASE}\nUSER 1\nENTRYPOINT [\"/x\"]\n", "not pinned"},
		{"latest", "ARG BASE=golang:latest@sha256:" + strings.Repeat("a", 64) + "\nFROM ${BASE}\nUSER 1\nENTRYPOINT [\"/x\"]\n", "latest"},
		{"add url", pinned + "FROM ${BASE}\nADD https://example.com/x /x\nUSER 1\nENTRYPOINT [\"/x\"]\n", "ADD"},
		{"no user", pinned + "FROM ${BASE}\nENTRYPOINT [\"/x\"]\n", "no USER"},
		{"root", pinned + "FROM ${BASE}\nUSER 0\nENTRYPOINT [\"/x\"]\n", "is root"},
		{"named user", pinned + "FROM ${BASE}\nUSER nonroot\nENTRYPOINT [\"/x\"]\n", "numeric uid"},
		{"shell entrypoint", pinned + "FROM ${BASE}\nUSER 1\nENTRYPOINT /x\n", "exec form"},
		{"curl sh", pinned + "FROM ${BASE}\nRUN curl -fsSL https://example.com/i | sh\nUSER 1\nENTRYPOINT [\"/x\"]\n", "pipes a download"},
		{"secret env", pinned + "FROM ${BASE}\nENV DB_PASSWORD=x\nUSER 1\nENTRYPOINT [\"/x\"]\n", "looks like a secret"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs := Dockerfile(tc.name, []byte(tc.src))
			if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), tc.want) }) {
				t.Errorf("want an error with %q, got %v", tc.want, errs)
			}
		})
	}
}
