package libsearch

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	lib := Library{Name: "libx.so", Env: "HELIX_X_LIB", Deps: "x", Hint: "make deps installs it"}
	root := t.TempDir()
	// mk creates dir/libx.so (or a folder of that name) under root and
	// returns its path.
	mk := func(dir string, asDir bool) string {
		t.Helper()
		p := filepath.Join(root, dir, lib.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if asDir {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	explicit := mk("explicit", false)
	fromEnv := mk("env", false)
	exeLib := mk("exe/bin/lib", false)
	exeUpLib := mk("exe2/lib", false)
	exeDeps := mk("exe3/.deps/x", false)
	wdDeps := mk("repo/.deps/x", false)
	ld2 := mk("ld2", false)
	system := mk("system", false)
	mk("dirlib", true)
	for _, d := range []string{"exe2/bin", "exe3/bin", "repo/a/b", "empty/bin", "empty/wd"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	in := func(d string) string { return filepath.Join(root, d) }

	tests := []struct {
		name      string
		explicit  string
		at        places
		want      string
		wantIs    error
		wantInErr []string
	}{
		{name: "explicit wins over the env", explicit: explicit, at: places{env: fromEnv, exeDir: in("exe/bin")}, want: explicit},
		{name: "explicit missing", explicit: in("nope/libx.so"), at: places{env: fromEnv},
			wantIs: fs.ErrNotExist, wantInErr: []string{"stat " + in("nope/libx.so")}},
		{name: "explicit is a directory", explicit: in("dirlib/libx.so"),
			wantIs: fs.ErrInvalid, wantInErr: []string{in("dirlib/libx.so") + " is a directory"}},
		{name: "env wins over the folders", at: places{env: fromEnv, exeDir: in("exe/bin")}, want: fromEnv},
		{name: "env missing", at: places{env: in("nope/libx.so"), exeDir: in("exe/bin")},
			wantIs: fs.ErrNotExist, wantInErr: []string{"HELIX_X_LIB=" + in("nope/libx.so")}},
		{name: "exe dir/lib", at: places{exeDir: in("exe/bin"), wd: in("repo")}, want: exeLib},
		{name: "exe dir/../lib", at: places{exeDir: in("exe2/bin"), wd: in("repo")}, want: exeUpLib},
		{name: "exe dir/../.deps", at: places{exeDir: in("exe3/bin"), wd: in("repo")}, want: exeDeps},
		{name: ".deps above the working directory", at: places{exeDir: in("empty/bin"), wd: in("repo/a/b"), ldLibraryPath: in("ld2")}, want: wdDeps},
		{name: "LD_LIBRARY_PATH in order, empty entries skipped",
			at: places{exeDir: in("empty/bin"), wd: in("empty/wd"), ldLibraryPath: ":" + in("ld1") + "::" + in("ld2"), system: []string{in("system")}}, want: ld2},
		{name: "system folders", at: places{wd: in("empty/wd"), system: []string{in("ld1"), in("system")}}, want: system},
		{name: "a folder named like the library is passed over", at: places{wd: in("empty/wd"), system: []string{in("dirlib"), in("system")}}, want: system},
		{name: "nowhere: every place named",
			at:     places{exeDir: in("empty/bin"), wd: in("empty/wd"), ldLibraryPath: in("ld1"), system: []string{in("dirlib")}},
			wantIs: ErrNotFound,
			wantInErr: []string{
				"libx.so not found (make deps installs it; HELIX_X_LIB is unset; looked at " + strings.Join([]string{
					in("empty/bin/lib/libx.so"), in("empty/lib/libx.so"), in("empty/.deps/x/libx.so"),
					in("empty/wd/.deps/x/libx.so"), in("empty/.deps/x/libx.so"),
				}, ", "),
				in("ld1/libx.so") + ", " + in("dirlib/libx.so") + ")",
				"/.deps/x/libx.so, " + in("ld1"), // the root's .deps ends the walk up
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := lib.find(tt.explicit, tt.at)
			if tt.wantIs == nil {
				if err != nil || got != tt.want {
					t.Fatalf("find = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("find = %q, %v; want an error wrapping %v", got, err, tt.wantIs)
			}
			for _, s := range tt.wantInErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestFindBadLibrary(t *testing.T) {
	tests := []struct {
		name string
		lib  Library
	}{
		{"no name", Library{Env: "X", Deps: "x"}},
		{"no deps folder", Library{Name: "libx.so", Env: "X"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.lib.Find(""); err == nil || !strings.Contains(err.Error(), "Name and Deps") {
				t.Fatalf("Find = %v; want an error naming the missing fields", err)
			}
		})
	}
}

// TestFindReadsTheProcess: Find takes $Env, the working directory and
// LD_LIBRARY_PATH from the process.
func TestFindReadsTheProcess(t *testing.T) {
	lib := Library{Name: "libhelix_libsearch_test.so", Env: "HELIX_LIBSEARCH_TEST_LIB", Deps: "libsearch-test"}
	root := t.TempDir()
	want := filepath.Join(root, ".deps", "libsearch-test", lib.Name)
	work := filepath.Join(root, "a")
	for _, d := range []string{filepath.Dir(want), work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(want, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(work)
	t.Setenv(lib.Env, "")
	if got, err := lib.Find(""); err != nil || got != want {
		t.Fatalf("Find from the working directory = %q, %v; want %q", got, err, want)
	}

	t.Setenv(lib.Env, filepath.Join(root, "nope.so"))
	if _, err := lib.Find(""); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), lib.Env+"=") {
		t.Fatalf("Find with $%s naming a missing file = %v", lib.Env, err)
	}

	t.Setenv(lib.Env, "")
	ld := t.TempDir()
	t.Setenv("LD_LIBRARY_PATH", ld)
	t.Chdir(t.TempDir())
	_, err := lib.Find("")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), filepath.Join(ld, lib.Name)) {
		t.Fatalf("Find with nothing anywhere = %v; want ErrNotFound naming %s", err, ld)
	}
}
