package kube

import (
	"errors"
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
		{"empty entry", map[string]string{ModelsAnnotation: "simple,,mlp"}, nil, "entry 2"},
		{"trailing comma", map[string]string{ModelsAnnotation: "simple,"}, nil, "entry 2"},
		{"slash", map[string]string{ModelsAnnotation: "a/b"}, nil, `entry 1 "a/b"`},
		{"space inside", map[string]string{ModelsAnnotation: "my model"}, nil, "not a valid model name"},
		{"wildcard", map[string]string{ModelsAnnotation: "*"}, nil, "not a valid model name"},
		{"dot dot", map[string]string{ModelsAnnotation: "a..b"}, nil, "not a valid model name"},
		{"leading dot", map[string]string{ModelsAnnotation: ".hidden"}, nil, "not a valid model name"},
		{"too long", map[string]string{ModelsAnnotation: strings.Repeat("m", 256)}, nil, "not a valid model name"},
		{"duplicate", map[string]string{ModelsAnnotation: "simple,mlp,simple"}, nil, `entry 3 "simple": listed twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseModels(tt.ann)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("parseModels = %v, %v; want an ErrInvalid with %q", got, err, tt.wantErr)
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
