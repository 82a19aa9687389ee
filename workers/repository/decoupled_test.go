package repository

import (
	"errors"
	"strings"
	"testing"

	pb "github.com/helixflow/helixflow/proto/inference"
)

func TestTransactionPolicy(t *testing.T) {
	decoupled := &pb.ModelTransactionPolicy{Decoupled: true}
	tests := []struct {
		name    string
		text    string
		wantErr string
	}{
		{"repeat decoupled", `backend: "repeat" model_transaction_policy { decoupled: true }`, ""},
		{"onnx decoupled", `platform: "onnxruntime_onnx" model_transaction_policy { decoupled: true }`, ""},
		{"onnx not decoupled", `platform: "onnxruntime_onnx" model_transaction_policy { decoupled: false }`, ""},
		{"repeat not decoupled", `backend: "repeat"`, "serves decoupled models only"},
		{"decoupled sequence", `model_transaction_policy { decoupled: true } sequence_batching { }`, "not supported with sequence_batching"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			err = checkTransactionPolicy(cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want ErrInvalidConfig containing %q", err, tt.wantErr)
			}
		})
	}
	ens := &pb.ModelConfig{Platform: PlatformEnsemble, ModelTransactionPolicy: decoupled}
	if err := checkTransactionPolicy(ens); err == nil || !strings.Contains(err.Error(), "ensembles") {
		t.Errorf("decoupled ensemble: %v", err)
	}
	if !IsDecoupled(&pb.ModelConfig{ModelTransactionPolicy: decoupled}) || IsDecoupled(&pb.ModelConfig{}) {
		t.Error("IsDecoupled")
	}
	// Normalize runs the check.
	cfg := &pb.ModelConfig{Backend: BackendRepeat}
	if err := Normalize(cfg, "repeat_int32"); err == nil || !strings.Contains(err.Error(), "decoupled") {
		t.Errorf("Normalize(repeat, not decoupled) = %v", err)
	}
	cfg = &pb.ModelConfig{Backend: BackendRepeat, ModelTransactionPolicy: decoupled}
	if err := Normalize(cfg, "repeat_int32"); err != nil {
		t.Errorf("Normalize(repeat, decoupled) = %v", err)
	}
}
