package models

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/tensor"
)

func TestClassificationLabels(t *testing.T) {
	root := t.TempDir()
	config := strings.Replace(simpleConfig, `{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 4 ] }`,
		`{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 4 ] label_filename: "labels.txt" }`, 1)
	writeModel(t, root, "labelled", config, 1)
	// Three labels for four classes: index 3 has none; index 1's is empty.
	if err := os.WriteFile(filepath.Join(root, "labelled", "labels.txt"), []byte("zero\r\n\ntwo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := newManager(t, root, ModeNone, &fakeBackend{})
	req := simpleRequest("labelled") // OUTPUT0 = 1002, 1003, 1004, 1005
	req.Outputs = []infer.RequestedOutput{{Name: "OUTPUT0", Parameters: map[string]any{"classification": int64(4)}}}
	resp, err := m.Infer(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tensor.DecodeBytes(resp.Outputs[0].Data, 4)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, g := range got {
		s = append(s, string(g))
	}
	if want := []string{"1005:3", "1004:2:two", "1003:1", "1002:0:zero"}; !slices.Equal(s, want) {
		t.Fatalf("classes %q, want %q", s, want)
	}
}

func TestLabelFileErrors(t *testing.T) {
	for name, file := range map[string]string{"missing": "absent.txt", "path": "../labels.txt"} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			config := strings.Replace(simpleConfig, `{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 4 ] }`,
				`{ name: "OUTPUT0" data_type: TYPE_INT32 dims: [ 4 ] label_filename: "`+file+`" }`, 1)
			writeModel(t, root, "labelled", config, 1)
			m := newManager(t, root, ModeExplicit, &fakeBackend{})
			err := m.LoadModel(context.Background(), "labelled", infer.LoadOptions{})
			if err == nil || !strings.Contains(err.Error(), "output 'OUTPUT0': label_filename") || infer.CodeOf(err) != infer.CodeInvalidArgument {
				t.Fatalf("load: %v", err)
			}
		})
	}
}

func TestSplitLabels(t *testing.T) {
	for in, want := range map[string][]string{"": nil, "a": {"a"}, "a\nb\n": {"a", "b"}, "a\r\nb": {"a", "b"}, "\n": nil, "a\n\n": {"a", ""}} {
		if got := splitLabels([]byte(in)); !slices.Equal(got, want) {
			t.Errorf("splitLabels(%q) = %q, want %q", in, got, want)
		}
	}
}
