package pytorch

import "github.com/helixflow/helixflow/workers/backend/libsearch"

// LibraryEnv names the environment variable that points at the shim,
// libhelix_torch.so.
const LibraryEnv = "HELIX_PYTORCH_LIB"

// LibraryName is the shim's file name; `make deps` builds it into
// .deps/pytorch/ (scripts/deps.sh), linked against the pinned torch wheel's
// libtorch_cpu.so by absolute path.
const LibraryName = "libhelix_torch.so"

// ErrLibraryNotFound is wrapped by FindLibrary when no place holds the shim
// (it is libsearch.ErrNotFound).
var ErrLibraryNotFound = libsearch.ErrNotFound

var library = libsearch.Library{
	Name: LibraryName,
	Env:  LibraryEnv,
	Deps: "pytorch",
	Hint: "`make deps` builds it into .deps/pytorch",
}

// FindLibrary returns the path of libhelix_torch.so, looking in order at
// $HELIX_PYTORCH_LIB, <exe dir>/lib, <exe dir>/../lib,
// <exe dir>/../.deps/pytorch, .deps/pytorch in the working directory and
// each of its parents, $LD_LIBRARY_PATH and the system library folders, as
// every backend looks for its library (libsearch.Library.Find). The error
// names every place looked at.
func FindLibrary() (string, error) { return library.Find("") }
