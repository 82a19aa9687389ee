package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"unicode"
	"unicode/utf8"

	registryv1 "github.com/helixflow/helixflow/proto/registry/v1"
)

// Bounds on a model's ModelInfo (the catalogue's description of a model).
// A worker that goes over one keeps its registration: the info alone is
// dropped (the catalogue then lists the model by name and versions), since
// routing does not depend on it.
const (
	// MaxConfigJSONBytes bounds ModelInfo.config_json, as the proto says.
	MaxConfigJSONBytes = 64 << 10
	// MaxTensorsPerModel bounds inputs and outputs, each.
	MaxTensorsPerModel = 1024
	// MaxTensorRank bounds a tensor's shape.
	MaxTensorRank = 64
	// MaxTensorNameBytes bounds an input's or output's name.
	MaxTensorNameBytes = 256
	// maxPlatformBytes bounds ModelInfo.platform ("onnxruntime_onnx").
	maxPlatformBytes = 64
)

// kserveDatatypes are the KServe v2 datatypes (workers/tensor's list; the
// control plane does not import the worker's packages).
var kserveDatatypes = []string{
	"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
	"FP16", "BF16", "FP32", "FP64", "BYTES",
}

// checkInfo reports the first problem with a model's info, naming the
// field (relative to the model: "info.inputs[2].datatype"), or nil.
// helix-authz embeds config_json in its JSON answers as it is, so it must
// be one JSON object.
func checkInfo(info *registryv1.ModelInfo) error {
	if p := info.GetPlatform(); len(p) > maxPlatformBytes || !isToken(p) {
		return fmt.Errorf("info.platform %q: want at most %d letters, digits, '_', '-' or '.'", clip(p), maxPlatformBytes)
	}
	if n := info.GetMaxBatchSize(); n < 0 {
		return fmt.Errorf("info.max_batch_size %d: want 0 (no batching) or more", n)
	}
	for _, side := range []struct {
		field   string
		tensors []*registryv1.TensorInfo
	}{{"inputs", info.GetInputs()}, {"outputs", info.GetOutputs()}} {
		if len(side.tensors) > MaxTensorsPerModel {
			return fmt.Errorf("info.%s: %d tensors, at most %d", side.field, len(side.tensors), MaxTensorsPerModel)
		}
		for i, t := range side.tensors {
			if err := checkTensor(t); err != nil {
				return fmt.Errorf("info.%s[%d]%w", side.field, i, err)
			}
		}
	}
	if c := info.GetConfigJson(); c != "" {
		if len(c) > MaxConfigJSONBytes {
			return fmt.Errorf("info.config_json: %d bytes, at most %d (send it empty when larger)", len(c), MaxConfigJSONBytes)
		}
		trimmed := bytes.TrimLeft([]byte(c), " \t\r\n")
		if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
			return fmt.Errorf("info.config_json: not a JSON object")
		}
	}
	return nil
}

// checkTensor's errors start with the field after the tensor's index.
func checkTensor(t *registryv1.TensorInfo) error {
	name := t.GetName()
	switch {
	case name == "":
		return fmt.Errorf(".name: empty")
	case len(name) > MaxTensorNameBytes:
		return fmt.Errorf(".name: longer than %d bytes", MaxTensorNameBytes)
	case !printable(name):
		return fmt.Errorf(".name %q: not printable UTF-8", clip(name))
	}
	if !slices.Contains(kserveDatatypes, t.GetDatatype()) {
		return fmt.Errorf(".datatype %q: not a KServe v2 datatype (%v)", clip(t.GetDatatype()), kserveDatatypes)
	}
	if len(t.GetShape()) > MaxTensorRank {
		return fmt.Errorf(".shape: %d dimensions, at most %d", len(t.GetShape()), MaxTensorRank)
	}
	for j, d := range t.GetShape() {
		if d < -1 {
			return fmt.Errorf(".shape[%d] %d: want a size, or -1 for a variable one", j, d)
		}
	}
	return nil
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// equalInfo compares two infos field by field (no reflection: a renewal
// compares every model's).
func equalInfo(a, b *registryv1.ModelInfo) bool {
	if a == b {
		return true
	}
	if a == nil || b == nil {
		return false
	}
	return a.GetPlatform() == b.GetPlatform() && a.GetMaxBatchSize() == b.GetMaxBatchSize() &&
		a.GetConfigJson() == b.GetConfigJson() && a.GetSequenceBatching() == b.GetSequenceBatching() &&
		slices.EqualFunc(a.GetInputs(), b.GetInputs(), equalTensor) &&
		slices.EqualFunc(a.GetOutputs(), b.GetOutputs(), equalTensor)
}

func equalTensor(a, b *registryv1.TensorInfo) bool {
	return a.GetName() == b.GetName() && a.GetDatatype() == b.GetDatatype() && slices.Equal(a.GetShape(), b.GetShape())
}
