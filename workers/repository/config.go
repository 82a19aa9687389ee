// Package repository reads a Triton model repository: the model folders,
// their config.pbtxt (the protobuf text format of ModelConfig), numeric
// version folders and version policies, and completes and checks a config
// against what the model file declares. It holds no running state.
package repository

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/encoding/prototext"

	pb "github.com/helixflow/helixflow/proto/inference"
)

// ConfigFile is the name of a model's configuration file.
const ConfigFile = "config.pbtxt"

// MaxConfigBytes bounds config.pbtxt; real configs are a few KiB.
const MaxConfigBytes = 4 << 20

// ErrInvalidConfig is wrapped by every error about a model's configuration.
var ErrInvalidConfig = errors.New("invalid model configuration")

// ParseConfig parses config.pbtxt contents. Errors carry the parser's
// line:column and wrap ErrInvalidConfig.
func ParseConfig(data []byte) (*pb.ModelConfig, error) {
	if len(data) > MaxConfigBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes, over the %d byte limit", ErrInvalidConfig, ConfigFile, len(data), MaxConfigBytes)
	}
	cfg := &pb.ModelConfig{}
	if err := (prototext.UnmarshalOptions{}).Unmarshal(data, cfg); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidConfig, ConfigFile, err)
	}
	return cfg, nil
}

// ReadConfig reads <dir>/config.pbtxt. A missing file gives an empty config
// (to be auto-completed from the model), as Triton does.
func ReadConfig(dir string) (*pb.ModelConfig, error) {
	path := filepath.Join(dir, ConfigFile)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return &pb.ModelConfig{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return ParseConfig(data)
}

// Platform and backend names this worker understands.
const (
	PlatformONNX    = "onnxruntime_onnx"
	BackendONNX     = "onnxruntime"
	DefaultONNXFile = "model.onnx"
	// BackendCUDA runs ONNX models on NVIDIA GPUs (workers/backend/cuda);
	// its platform is empty or onnxruntime_onnx (the model format).
	BackendCUDA = "cuda"
	// PlatformEnsemble is Triton's ensemble: steps of other models, no
	// backend and no model file (workers/ensemble).
	PlatformEnsemble = "ensemble"
	// BackendRepeat is Triton's decoupled example backend "repeat"
	// (workers/backend/repeat): no model file.
	BackendRepeat = "repeat"
	// PlatformTorch is a TorchScript model (model.pt) run by libtorch
	// (workers/backend/pytorch), Triton's pytorch_libtorch.
	PlatformTorch    = "pytorch_libtorch"
	BackendTorch     = "pytorch"
	DefaultTorchFile = "model.pt"
	// PlatformTFSavedModel is a TensorFlow SavedModel (a folder,
	// model.savedmodel), Triton's tensorflow_savedmodel
	// (workers/backend/tensorflow).
	PlatformTFSavedModel  = "tensorflow_savedmodel"
	BackendTF             = "tensorflow"
	DefaultSavedModelFile = "model.savedmodel"
)

// DefaultModelFile is Triton's default model file (or folder) name of a
// platform.
func DefaultModelFile(platform string) string {
	switch platform {
	case PlatformTorch:
		return DefaultTorchFile
	case PlatformTFSavedModel:
		return DefaultSavedModelFile
	}
	return DefaultONNXFile
}

// Normalize fills what Triton derives from the folder before looking at the
// model file: the name, backend/platform pairing and the model filename.
// It reports contradictions as errors naming the field.
func Normalize(cfg *pb.ModelConfig, folderName string) error {
	if cfg.Name == "" {
		cfg.Name = folderName
	} else if cfg.Name != folderName {
		return fmt.Errorf("%w: name %q does not match the model folder %q", ErrInvalidConfig, cfg.Name, folderName)
	}
	switch {
	case cfg.Backend == "" && cfg.Platform == "":
		// Only ONNX models are served today; a folder without either field
		// is taken as one, and the model file check below confirms it.
		cfg.Backend, cfg.Platform = BackendONNX, PlatformONNX
	case cfg.Backend == "" && cfg.Platform == PlatformONNX:
		cfg.Backend = BackendONNX
	case cfg.Backend == BackendONNX && cfg.Platform == "":
		cfg.Platform = PlatformONNX
	case cfg.Backend == BackendONNX && cfg.Platform == PlatformONNX:
	case cfg.Backend == BackendCUDA && (cfg.Platform == "" || cfg.Platform == PlatformONNX):
	case cfg.Backend == "" && cfg.Platform == PlatformEnsemble:
	case cfg.Backend == BackendRepeat && cfg.Platform == "":
	case cfg.Backend == "" && cfg.Platform == PlatformTorch, cfg.Backend == BackendTorch && cfg.Platform == "":
		cfg.Backend, cfg.Platform = BackendTorch, PlatformTorch
	case cfg.Backend == BackendTorch && cfg.Platform == PlatformTorch:
	case cfg.Backend == "" && cfg.Platform == PlatformTFSavedModel, cfg.Backend == BackendTF && cfg.Platform == "":
		cfg.Backend, cfg.Platform = BackendTF, PlatformTFSavedModel
	case cfg.Backend == BackendTF && cfg.Platform == PlatformTFSavedModel:
	default:
		return fmt.Errorf("%w: backend %q / platform %q is not supported (supported: backend %q, %q, %q, %q or %q, platform %q, %q, %q or %q)",
			ErrInvalidConfig, cfg.Backend, cfg.Platform, BackendONNX, BackendCUDA, BackendRepeat, BackendTorch, BackendTF,
			PlatformONNX, PlatformTorch, PlatformTFSavedModel, PlatformEnsemble)
	}
	if cfg.DefaultModelFilename == "" {
		cfg.DefaultModelFilename = DefaultModelFile(cfg.Platform)
	}
	if strings.ContainsAny(cfg.DefaultModelFilename, `/\`) || cfg.DefaultModelFilename == ".." {
		return fmt.Errorf("%w: default_model_filename %q must be a file name, not a path", ErrInvalidConfig, cfg.DefaultModelFilename)
	}
	if cfg.MaxBatchSize < 0 {
		return fmt.Errorf("%w: max_batch_size %d is negative", ErrInvalidConfig, cfg.MaxBatchSize)
	}
	if err := checkSequenceBatching(cfg); err != nil {
		return err
	}
	if err := checkEnsembleScheduling(cfg); err != nil {
		return err
	}
	if err := checkTransactionPolicy(cfg); err != nil {
		return err
	}
	return checkFields(cfg)
}
