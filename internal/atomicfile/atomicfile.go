// Package atomicfile replaces a file so that a reader (Envoy, helix-xds's
// config watcher, a shell sourcing local.env) sees the old contents or the
// new, never half a file, and so that secret bytes are never readable by
// others on the way.
//
// Written by hand rather than with github.com/google/renameio/v2: its
// WriteFile keeps the mode of the file it replaces and applies the umask,
// while a private key here must end exactly 0600 whatever was there
// before; the few lines below are all that is needed.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with b, with exactly mode as its permissions: a
// temporary file beside it (0600 from its creation) is written, given
// mode, synced and renamed over path. On error path is unchanged and the
// temporary file is gone.
func Write(path string, b []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name())
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if _, err = f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err = f.Chmod(mode); err != nil {
		_ = f.Close()
		return err
	}
	if err = errors.Join(f.Sync(), f.Close()); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
