package tensorflow

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestParseSignatureFromSavedModel(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "add_sub", SavedModelFile))
	if err != nil {
		t.Fatal(err)
	}
	mg, err := findMetaGraph(data, ServeTag)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := parseSignature(mg, DefaultSignature)
	if err != nil {
		t.Fatal(err)
	}
	if len(sig.Inputs) != 2 || sig.Inputs[0].Key != "a" || sig.Inputs[0].DType != tfFloat ||
		!strings.HasPrefix(sig.Inputs[0].TensorName, "serving_default_a:") {
		t.Errorf("inputs = %+v", sig.Inputs)
	}
	if _, err := findMetaGraph(data, "train"); err == nil || !strings.Contains(err.Error(), `no meta graph is tagged "train" (tag sets: [serve])`) {
		t.Errorf("findMetaGraph(train) error = %v", err)
	}
}

// signatureDef builds a MetaGraphDef holding one signature with one input.
func signatureDef(key string, tensorInfo []byte) []byte {
	entry := func(k string, v []byte) []byte {
		var b []byte
		b = protowire.AppendTag(b, mapKey, protowire.BytesType)
		b = protowire.AppendString(b, k)
		b = protowire.AppendTag(b, mapValue, protowire.BytesType)
		return protowire.AppendBytes(b, v)
	}
	var sig []byte
	sig = protowire.AppendTag(sig, signatureInputs, protowire.BytesType)
	sig = protowire.AppendBytes(sig, entry("x", tensorInfo))
	var mg []byte
	mg = protowire.AppendTag(mg, metaGraphSignatures, protowire.BytesType)
	return protowire.AppendBytes(mg, entry(key, sig))
}

func TestIOsRefusals(t *testing.T) {
	info := func(dtype uint64, extra ...byte) []byte {
		var b []byte
		b = protowire.AppendTag(b, tensorInfoName, protowire.BytesType)
		b = protowire.AppendString(b, "x:0")
		b = protowire.AppendTag(b, tensorInfoDtype, protowire.VarintType)
		b = protowire.AppendVarint(b, dtype)
		return append(b, extra...)
	}
	unknownRank := protowire.AppendVarint(protowire.AppendTag(nil, shapeUnknownRank, protowire.VarintType), 1)
	shape := protowire.AppendBytes(protowire.AppendTag(nil, tensorInfoShape, protowire.BytesType), unknownRank)
	sparse := protowire.AppendBytes(protowire.AppendTag(nil, tensorInfoCooSparse, protowire.BytesType), nil)
	tests := []struct {
		name, want string
		info       []byte
	}{
		{"complex", "dtype DT_COMPLEX64, which has no KServe datatype", info(8)},
		{"unknown rank", "unknown rank", info(tfFloat, shape...)},
		{"sparse", "sparse or composite", info(tfFloat, sparse...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig, err := parseSignature(signatureDef(DefaultSignature, tt.info), DefaultSignature)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ios("input", sig.Inputs); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ios error = %v, want %q", err, tt.want)
			}
		})
	}
}

// FuzzParseSignature feeds arbitrary bytes as saved_model.pb: decoding
// must not panic, and what decodes must convert or be refused with an error.
func FuzzParseSignature(f *testing.F) {
	for _, m := range []string{"add_sub", "types", "other_sig"} {
		if data, err := os.ReadFile(filepath.Join("testdata", m, SavedModelFile)); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte{})
	f.Add(signatureDef(DefaultSignature, []byte{0x0a, 0x03, 'x', ':', '0', 0x10, 0x01}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if sig, err := parseSignature(data, DefaultSignature); err == nil {
			_, _ = ios("input", sig.Inputs)
			_, _ = ios("output", sig.Outputs)
		}
		if mg, err := findMetaGraph(data, ServeTag); err == nil {
			if sig, err := parseSignature(mg, DefaultSignature); err == nil {
				_, _ = ios("input", sig.Inputs)
			}
		}
	})
}
