package stack

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
)

// RepoModel is one model of a repository made from a sample model, so
// that workers of the stack can serve what models/ does not hold: several
// versions of a model (a rollout's), or a model whose config makes it
// slow or failing (a bad canary, a broken shadow).
type RepoModel struct {
	// Sample is the sample model (models/<Sample>) whose config and
	// version 1 files this model takes.
	Sample string
	// Name is the model's name (default Sample).
	Name string
	// Versions are its version folders, each with links to the sample's
	// version 1 files, so that every version answers alike (the answer's
	// model_version tells them apart). Default: 1.
	Versions []int
	// MaxBatchSize replaces the sample's max_batch_size (0: keep it).
	MaxBatchSize int
	// Config is appended to the sample's config.pbtxt (a version_policy,
	// a dynamic_batching, ...).
	Config string
}

var maxBatchSizeLine = regexp.MustCompile(`(?m)^max_batch_size: [0-9]+$`)

// MakeRepository writes a model repository into dir (which must exist)
// from the sample models under root/models: each model's config.pbtxt is
// a file of its own, its version folders real folders (a worker does not
// follow a linked one) holding links to the sample's files.
func MakeRepository(root, dir string, models ...RepoModel) error {
	for _, m := range models {
		if err := m.write(filepath.Join(root, "models"), dir); err != nil {
			return fmt.Errorf("stack: repository model %q: %w", m.Sample, err)
		}
	}
	return nil
}

func (m RepoModel) write(samples, dir string) error {
	src := filepath.Join(samples, m.Sample)
	cfg, err := os.ReadFile(filepath.Join(src, "config.pbtxt"))
	if err != nil {
		return err
	}
	name := m.Name
	if name == "" {
		name = m.Sample
	}
	if name != m.Sample {
		old := []byte(`name: "` + m.Sample + `"`)
		if !bytes.Contains(cfg, old) {
			return fmt.Errorf("%s/config.pbtxt has no %s", src, old)
		}
		cfg = bytes.Replace(cfg, old, []byte(`name: "`+name+`"`), 1)
	}
	if m.MaxBatchSize > 0 {
		if !maxBatchSizeLine.Match(cfg) {
			return fmt.Errorf("%s/config.pbtxt has no max_batch_size line", src)
		}
		cfg = maxBatchSizeLine.ReplaceAll(cfg, []byte("max_batch_size: "+strconv.Itoa(m.MaxBatchSize)))
	}
	if m.Config != "" {
		cfg = append(append(cfg, '\n'), m.Config...)
	}
	files, err := os.ReadDir(filepath.Join(src, "1"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("%s/1 is empty (run make models)", src)
	}
	dst := filepath.Join(dir, name)
	versions := m.Versions
	if len(versions) == 0 {
		versions = []int{1}
	}
	for _, v := range versions {
		vdir := filepath.Join(dst, strconv.Itoa(v))
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			return err
		}
		for _, f := range files {
			if err := os.Symlink(filepath.Join(src, "1", f.Name()), filepath.Join(vdir, f.Name())); err != nil {
				return err
			}
		}
	}
	return os.WriteFile(filepath.Join(dst, "config.pbtxt"), cfg, 0o644)
}
