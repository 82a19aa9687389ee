package models

import (
	"context"
	"reflect"
	"slices"
	"testing"

	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
)

func TestServerMetadataAndHealth(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "simple", simpleConfig, 1)
	m, err := New(Config{Repository: root, ControlMode: ModeNone, ServerVersion: "1.2.3",
		Backends: map[string]backend.Backend{"onnxruntime": &fakeBackend{}}})
	if err != nil {
		t.Fatal(err)
	}
	md := m.ServerMetadata()
	if md.Name != "helix-worker" || md.Version != "1.2.3" || !slices.Equal(md.Extensions, Extensions) {
		t.Fatalf("server metadata %+v", md)
	}
	md.Extensions[0] = "changed"
	if Extensions[0] == "changed" {
		t.Fatal("ServerMetadata hands out the package's Extensions slice")
	}
	if !m.Live() {
		t.Fatal("not live")
	}
	if m.Ready() {
		t.Fatal("ready before Start")
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !m.Ready() {
		t.Fatal("not ready after Start")
	}
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if m.Ready() {
		t.Fatal("ready after Close")
	}
}

// noError marks a table row that expects no error.
const noError infer.Code = -1

func TestModelStatistics(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "a", simpleConfig+"version_policy { all {} }\n", 1, 2)
	writeModel(t, root, "b", simpleConfig, 1)
	m := newManager(t, root, ModeNone, &fakeBackend{})
	ctx := t.Context()
	if _, err := m.Infer(ctx, &infer.Request{Model: "a", Version: "1", Inputs: simpleRequest("").Inputs}); err != nil {
		t.Fatal(err)
	}
	type row struct {
		Name, Version string
		Count         uint64
	}
	tests := []struct {
		name, model, version string
		want                 []row
		code                 infer.Code
	}{
		{"every model and version", "", "", []row{{"a", "1", 1}, {"a", "2", 0}, {"b", "1", 0}}, noError},
		{"every version of one model", "a", "", []row{{"a", "1", 1}, {"a", "2", 0}}, noError},
		{"one version", "a", "2", []row{{"a", "2", 0}}, noError},
		{"unknown model", "nope", "", nil, infer.CodeNotFound},
		{"unknown version", "a", "9", nil, infer.CodeNotFound},
		{"bad version", "a", "x", nil, infer.CodeInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := m.ModelStatistics(ctx, tt.model, tt.version)
			if (tt.code == noError) != (err == nil) || (err != nil && infer.CodeOf(err) != tt.code) {
				t.Fatalf("err = %v, want code %v", err, tt.code)
			}
			var got []row
			for _, s := range st {
				got = append(got, row{s.Name, s.Version, s.InferenceCount})
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("statistics %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRepositoryIndexReadyOnly: ready=true lists serving versions only;
// folders never loaded appear without a state otherwise.
func TestRepositoryIndexReadyOnly(t *testing.T) {
	root := t.TempDir()
	writeModel(t, root, "loaded", simpleConfig, 1)
	writeModel(t, root, "idle", simpleConfig, 1)
	m := newManager(t, root, ModeExplicit, &fakeBackend{}, "loaded")
	all, err := m.RepositoryIndex(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	want := []infer.IndexEntry{{Name: "idle"}, {Name: "loaded", Version: "1", State: infer.StateReady}}
	if !reflect.DeepEqual(all, want) {
		t.Fatalf("index %+v, want %+v", all, want)
	}
	ready, err := m.RepositoryIndex(t.Context(), true)
	if err != nil || !reflect.DeepEqual(ready, want[1:]) {
		t.Fatalf("ready index %+v, %v", ready, err)
	}
}
