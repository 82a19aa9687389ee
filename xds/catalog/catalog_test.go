package catalog

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/internal/identity"
	catalogv1 "github.com/helixflow/helixflow/proto/catalog/v1"
	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
	"github.com/helixflow/helixflow/xds/registry"
)

func info(platform string) *registryv1.ModelInfo {
	return &registryv1.ModelInfo{
		Platform: platform, MaxBatchSize: 8,
		Inputs:     []*registryv1.TensorInfo{{Name: "INPUT0", Datatype: "INT32", Shape: []int64{16}}},
		Outputs:    []*registryv1.TensorInfo{{Name: "OUTPUT0", Datatype: "INT32", Shape: []int64{16}}},
		ConfigJson: `{"name":"simple","platform":"` + platform + `"}`,
	}
}

func TestBuild(t *testing.T) {
	ready, notReady, onlyNotReady := info("onnxruntime_onnx"), info("from-a-worker-not-ready"), info("only-report")
	workers := []registry.Worker{
		// Out of id order: the choice of info must not depend on it.
		{ID: "w3", Ready: true, Models: []registry.Model{
			{Name: "simple", Versions: []string{"1", "10"}, Ready: true, Info: info("later-by-id")},
		}},
		// Models sorted by name, as the sources keep them.
		{ID: "w1", Ready: false, Models: []registry.Model{ // the worker is not ready
			{Name: "mlp", Versions: []string{"1"}, Ready: true, Info: onlyNotReady},
			{Name: "simple", Versions: []string{"2"}, Ready: true, Info: notReady},
		}},
		{ID: "w2", Ready: true, Models: []registry.Model{
			{Name: "gone", Ready: false}, // no version, not ready: not loaded
			{Name: "loading", Versions: []string{"3"}, Ready: false},
			{Name: "simple", Versions: []string{"1", "9"}, Ready: true, Info: ready},
		}},
		// Kubernetes: names only, ready, no versions.
		{ID: "pod-a", Ready: true, Models: []registry.Model{{Name: "kube", Ready: true}}},
		{ID: "pod-b", Ready: false, Models: []registry.Model{{Name: "kube", Ready: true}}},
	}
	want := &catalogv1.ListModelsResponse{Models: []*catalogv1.CatalogModel{
		{Name: "kube", Workers: 2, ReadyWorkers: 1},
		{Name: "loading", Workers: 1},
		{Name: "mlp", Workers: 1, Info: onlyNotReady},
		{Name: "simple", Versions: []string{"1", "9", "10"}, Workers: 3, ReadyWorkers: 2, Info: ready},
	}}
	got := Build(workers)
	if !proto.Equal(want, got) {
		t.Fatalf("Build:\n%s\nwant:\n%s", prototext.Format(got), prototext.Format(want))
	}
	if got.Models[3].Info != ready {
		t.Error("the info is not the source's own (shared, read-only)")
	}
	if got := Build(nil); len(got.GetModels()) != 0 {
		t.Fatalf("no workers: %v", got)
	}
}

func TestBoundLeavesOutConfigThenInfo(t *testing.T) {
	big := info("onnxruntime_onnx")
	big.ConfigJson = `{"x":"` + strings.Repeat("a", 4000) + `"}`
	mk := func() *catalogv1.ListModelsResponse {
		return Build([]registry.Worker{{ID: "w", Ready: true, Models: []registry.Model{
			{Name: "a", Versions: []string{"1"}, Ready: true, Info: big},
			{Name: "b", Versions: []string{"1"}, Ready: true, Info: big},
		}}})
	}
	for _, tc := range []struct {
		limit int
		left  string
	}{
		{1 << 20, ""},
		{1000, "config_json"},
		{40, "info"},
	} {
		resp := mk()
		if left := bound(resp, tc.limit); left != tc.left {
			t.Errorf("limit %d: left out %q, want %q", tc.limit, left, tc.left)
		}
		if tc.left != "" && proto.Size(resp) > tc.limit {
			t.Errorf("limit %d: %d bytes", tc.limit, proto.Size(resp))
		}
		if tc.left == "config_json" && (resp.Models[0].Info.GetPlatform() != "onnxruntime_onnx" || resp.Models[0].Info.GetConfigJson() != "") {
			t.Errorf("limit %d: info %v", tc.limit, resp.Models[0].Info)
		}
	}
	if len(big.ConfigJson) < 4000 {
		t.Fatal("bound modified the source's info")
	}
}

type source []registry.Worker

func (s source) Snapshot() []registry.Worker { return s }

func TestServerWithoutIdentity(t *testing.T) {
	src := source{{ID: "w", Ready: true, Models: []registry.Model{{Name: "simple", Versions: []string{"1"}, Ready: true}}}}
	// Readers set: a call without TLS has no identity and is refused.
	s, err := New(Config{Source: src, Readers: identity.CatalogReaders()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.ListModels(context.Background(), &catalogv1.ListModelsRequest{})
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "no TLS") {
		t.Fatalf("no identity: %v", err)
	}
	// No readers (plaintext on loopback): anyone.
	open, err := New(Config{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := open.ListModels(context.Background(), &catalogv1.ListModelsRequest{})
	if err != nil || len(resp.GetModels()) != 1 {
		t.Fatalf("open server: %v, %v", resp, err)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("no source accepted")
	}
	if _, err := New(Config{Source: source{}, Readers: []string{"helix-authz"}}); err == nil || !strings.Contains(err.Error(), "helix-authz") {
		t.Errorf("a reader that is no identity: %v", err)
	}
}
