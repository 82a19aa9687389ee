package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the release, set with -ldflags "-X main.Version=..." (make
// build). This is internal/version's --version line, kept here in its
// smallest form: this module cannot require the main module without
// taking on its dependency versions, which the service's older
// OpenTelemetry pins cannot follow (see go.mod).
var Version = "dev"

// versionString is what --version prints: release, commit, Go version and
// the envoyproxy/ratelimit module inside.
func versionString() string {
	commit, modified, service := "unknown", false, "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		for _, d := range info.Deps {
			if d.Path == "github.com/envoyproxy/ratelimit" {
				service = d.Version
			}
		}
	}
	if modified {
		commit += ", modified"
	}
	return fmt.Sprintf("helix-ratelimit %s (commit %s) %s %s/%s, envoyproxy/ratelimit %s", Version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH, service)
}
