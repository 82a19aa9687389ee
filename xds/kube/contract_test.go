package kube

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestParseModels(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		want    []string
		wantErr string
	}{
		{"two, sorted", map[string]string{ModelsAnnotation: "simple,mlp"}, []string{"mlp", "simple"}, ""},
		{"spaces around names", map[string]string{ModelsAnnotation: " simple , mlp "}, []string{"mlp", "simple"}, ""},
		{"one", map[string]string{ModelsAnnotation: "resnet50_v1.5"}, []string{"resnet50_v1.5"}, ""},
		{"missing", nil, nil, "missing"},
		{"empty", map[string]string{ModelsAnnotation: " "}, nil, "empty"},
		{"empty entry", map[string]string{ModelsAnnotation: "simple,,mlp"}, []string{"mlp", "simple"}, `entry 2 "" left out: not a valid model name: empty`},
		{"trailing comma", map[string]string{ModelsAnnotation: "simple,"}, []string{"simple"}, "entry 2"},
		{"slash", map[string]string{ModelsAnnotation: "a/b"}, nil, `entry 1 "a/b" left out: not a valid model name: byte 1 is '/', a path separator`},
		{"space inside", map[string]string{ModelsAnnotation: "my model"}, nil, "byte 2 is ' ', white space"},
		{"space inside, good one kept", map[string]string{ModelsAnnotation: "my model,simple"}, []string{"simple"}, `entry 1 "my model" left out`},
		{"wildcard", map[string]string{ModelsAnnotation: "*"}, nil, "wildcard"},
		{"dot dot", map[string]string{ModelsAnnotation: "a..b"}, nil, `contains ".."`},
		{"leading dot", map[string]string{ModelsAnnotation: ".hidden"}, nil, "starts with '.'"},
		{"too long", map[string]string{ModelsAnnotation: strings.Repeat("m", 256)}, nil, "256 bytes"},
		{"two bad", map[string]string{ModelsAnnotation: "a b,c*"}, nil, "entry 2"},
		{"duplicate", map[string]string{ModelsAnnotation: "simple,mlp,simple"}, []string{"mlp", "simple"}, `entry 3 "simple": listed twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseModels(tt.ann)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalid) || !slices.Equal(got, tt.want) {
					t.Fatalf("parseModels = %v, %v; want %v and an ErrInvalid with %q", got, err, tt.want, tt.wantErr)
				}
				if !strings.Contains(err.Error(), ModelsAnnotation) {
					t.Fatalf("error %q does not name the annotation", err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("parseModels = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestParsePool(t *testing.T) {
	tests := []struct {
		labels  map[string]string
		want    string
		wantErr string
	}{
		{nil, "default", ""},
		{map[string]string{PoolLabel: ""}, "default", ""},
		{map[string]string{PoolLabel: "gpu-a100"}, "gpu-a100", ""},
		{map[string]string{PoolLabel: strings.Repeat("p", 63)}, strings.Repeat("p", 63), ""},
		{map[string]string{PoolLabel: strings.Repeat("p", 64)}, "", "64 bytes, at most 63"},
		{map[string]string{PoolLabel: "Canary"}, "", `label helixflow.io/pool "Canary": not a valid pool name: byte 0 is 'C'`},
		{map[string]string{PoolLabel: "a.b"}, "", "byte 1 is '.'"},
	}
	for _, tt := range tests {
		got, err := parsePool(tt.labels)
		if tt.wantErr != "" {
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parsePool(%v) = %q, %v; want an ErrInvalid with %q", tt.labels, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parsePool(%v) = %q, %v; want %q", tt.labels, got, err, tt.want)
		}
	}
}

// TestChartWritesTheContract: the Helm chart's worker Service carries the
// label and annotation names defined here (the chart cannot import them;
// this pins its copy to this one).
func TestChartWritesTheContract(t *testing.T) {
	b, err := os.ReadFile("../../deploy/helm/helixflow/templates/workers.yaml")
	if err != nil {
		t.Fatal(err)
	}
	svc, _, _ := strings.Cut(string(b), "kind: Deployment")
	for _, want := range []string{
		ComponentLabel + ": " + WorkerComponent,
		PoolLabel + ": {{ $p.name }}",
		ModelsAnnotation + ": ",
		SequenceModelsAnnotation + ": ",
		"name: " + GRPCPortName,
		"name: " + HTTPPortName,
	} {
		if !strings.Contains(svc, want) {
			t.Errorf("the chart's worker Service lacks %q", want)
		}
	}
}
