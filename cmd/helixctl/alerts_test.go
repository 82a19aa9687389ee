package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/prometheus/alertmanager/api/v2/client/alert"
	"github.com/prometheus/alertmanager/api/v2/models"

	"github.com/helixflow/helixflow/internal/freeport"
	"github.com/helixflow/helixflow/internal/testdeps"
)

// startAlertmanager runs Debian's Alertmanager on a free loopback port
// with nothing to send to, and returns its URL. Without it the test is
// skipped, or fails when CI=true.
func startAlertmanager(t *testing.T) string {
	t.Helper()
	var bin string
	for _, name := range []string{"prometheus-alertmanager", "alertmanager"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		testdeps.Missing(t, "Alertmanager not found: run make deps (Debian's prometheus-alertmanager)")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte("route:\n  receiver: none\nreceivers:\n  - name: none\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := freeport.Pick()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var log bytes.Buffer
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("alertmanager log:\n%s", log.String())
		}
	})
	u := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(u + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return u
			}
		}
		select {
		case err := <-done:
			t.Fatalf("alertmanager exited: %v\n%s", err, log.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager not ready after 30s:\n%s", log.String())
		}
	}
}

// postAlerts sends alerts as Prometheus would.
func postAlerts(t *testing.T, amURL string, alerts ...map[string]string) {
	t.Helper()
	af := alertmanagerFlags{url: amURL, output: "table", timeout: 10 * time.Second}
	c, err := af.client()
	if err != nil {
		t.Fatal(err)
	}
	now := strfmt.DateTime(time.Now().Add(-time.Minute))
	var ps models.PostableAlerts
	for _, ls := range alerts {
		labels := models.LabelSet{}
		for k, v := range ls {
			labels[k] = v
		}
		ps = append(ps, &models.PostableAlert{
			Alert:       models.Alert{Labels: labels},
			Annotations: models.LabelSet{"summary": ls["alertname"] + " summary"},
			StartsAt:    now,
		})
	}
	if _, err := c.Alert.PostAlerts(alert.NewPostAlertsParamsWithContext(t.Context()).WithAlerts(ps)); err != nil {
		t.Fatal(err)
	}
}

// listJSON runs `helixctl alerts list --output json` with args.
func listJSON(t *testing.T, amURL string, args ...string) []models.GettableAlert {
	t.Helper()
	var out bytes.Buffer
	if err := run(t.Context(), append([]string{"alerts", "list", "--alertmanager-url", amURL, "--output", "json"}, args...), &out); err != nil {
		t.Fatal(err)
	}
	var got []models.GettableAlert
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v in %s", err, out.String())
	}
	return got
}

func names(as []models.GettableAlert) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Labels["alertname"]
	}
	return out
}

// TestAlertsAgainstAlertmanager lists and silences alerts in a real
// Alertmanager through its v2 API.
func TestAlertsAgainstAlertmanager(t *testing.T) {
	am := startAlertmanager(t)
	postAlerts(t, am,
		map[string]string{"alertname": "HelixWorkerDown", "severity": "warning", "team": "inference", "instance": "127.0.0.1:8002"},
		map[string]string{"alertname": "HelixModelUnavailable", "severity": "critical", "team": "inference", "model": "simple"},
	)

	// Critical first.
	if got := names(listJSON(t, am)); strings.Join(got, ",") != "HelixModelUnavailable,HelixWorkerDown" {
		t.Fatalf("alerts list: %v", got)
	}
	if got := names(listJSON(t, am, "--match", `severity="warning"`)); strings.Join(got, ",") != "HelixWorkerDown" {
		t.Fatalf("alerts list --match severity=warning: %v", got)
	}
	var table bytes.Buffer
	if err := run(t.Context(), []string{"alerts", "list", "--alertmanager-url", am}, &table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ALERT", "HelixModelUnavailable", "critical", "model=simple", "HelixWorkerDown summary"} {
		if !strings.Contains(table.String(), want) {
			t.Fatalf("table output lacks %q:\n%s", want, table.String())
		}
	}

	var out bytes.Buffer
	if err := run(t.Context(), []string{"alerts", "silence", "--alertmanager-url", am, "--match", `alertname="HelixWorkerDown"`,
		"--match", `instance=~"127\\.0\\.0\\.1:.*"`, "--duration", "1h", "--comment", "maintenance", "--author", "test", "--output", "json"}, &out); err != nil {
		t.Fatal(err)
	}
	var created struct {
		SilenceID string    `json:"silenceID"`
		EndsAt    time.Time `json:"endsAt"`
	}
	if err := json.Unmarshal(out.Bytes(), &created); err != nil || created.SilenceID == "" {
		t.Fatalf("silence output %q: %v", out.String(), err)
	}
	if d := time.Until(created.EndsAt); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("silence ends in %v, want 1h", d)
	}
	// The silenced alert leaves the default list and shows as suppressed
	// with --silenced.
	if got := names(listJSON(t, am)); strings.Join(got, ",") != "HelixModelUnavailable" {
		t.Fatalf("after the silence: %v", got)
	}
	all := listJSON(t, am, "--silenced")
	if len(all) != 2 {
		t.Fatalf("--silenced: %v", names(all))
	}
	for _, a := range all {
		if a.Labels["alertname"] == "HelixWorkerDown" && (a.Status == nil || *a.Status.State != "suppressed" ||
			len(a.Status.SilencedBy) != 1 || a.Status.SilencedBy[0] != created.SilenceID) {
			t.Fatalf("silenced alert status %+v", a.Status)
		}
	}
}

func TestAlertsBadInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"alerts", "mute"}, "unknown subcommand alerts"},
		{[]string{"alerts", "list", "--output", "yaml"}, "--output"},
		{[]string{"alerts", "list", "--alertmanager-url", "127.0.0.1:9093"}, "--alertmanager-url"},
		{[]string{"alerts", "list", "--match", `alertname=~"["`}, "matcher"},
		{[]string{"alerts", "silence", "--comment", "x"}, "--match is required"},
		{[]string{"alerts", "silence", "--match", `alertname="X"`}, "--comment is required"},
		{[]string{"alerts", "silence", "--match", `alertname="X"`, "--comment", "x", "--duration", "-1h"}, "--duration"},
		{[]string{"alerts", "silence", "--match", "alertname"}, "matcher"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			err := run(ctx, c.args, &bytes.Buffer{})
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a usage error about %q", err, c.want)
			}
		})
	}
	err := run(ctx, []string{"alerts", "list", "--alertmanager-url", "http://127.0.0.1:1"}, &bytes.Buffer{})
	if err == nil || errors.Is(err, errUsage) || !strings.Contains(err.Error(), "alertmanager") {
		t.Fatalf("unreachable Alertmanager: %v", err)
	}
}
