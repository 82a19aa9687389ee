package models

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/repository"
)

// maxLabelBytes bounds a label file (ImageNet's 1000 labels are ~30 KiB).
const maxLabelBytes = 16 << 20

// readLabels reads the label file of each output that names one
// (label_filename, in the model's folder, one label per line, as Triton
// reads it), for classification. A missing or unreadable file fails the
// load, naming the output.
func readLabels(dir string, cfg *pb.ModelConfig) (map[string][]string, error) {
	var labels map[string][]string
	for _, out := range cfg.Output {
		name := out.LabelFilename
		if name == "" {
			continue
		}
		if name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
			return nil, fmt.Errorf("%w: output '%s': label_filename %q must be the name of a file in the model's folder",
				repository.ErrInvalidConfig, out.Name, name)
		}
		path := filepath.Join(dir, name)
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("%w: output '%s': label_filename: %v", repository.ErrInvalidConfig, out.Name, err)
		}
		if st.Size() > maxLabelBytes {
			return nil, fmt.Errorf("%w: output '%s': label file %s is %d bytes, over the %d byte limit",
				repository.ErrInvalidConfig, out.Name, path, st.Size(), maxLabelBytes)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("%w: output '%s': label_filename: %v", repository.ErrInvalidConfig, out.Name, err)
		}
		if labels == nil {
			labels = make(map[string][]string)
		}
		labels[out.Name] = splitLabels(data)
	}
	return labels, nil
}

// splitLabels splits a label file into lines, without their "\n" or
// "\r\n"; a last line without a newline counts.
func splitLabels(data []byte) []string {
	data = bytes.TrimSuffix(data, []byte("\n"))
	if len(data) == 0 {
		return nil
	}
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	return lines
}
