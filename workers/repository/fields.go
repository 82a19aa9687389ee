package repository

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/helixflow/helixflow/proto/inference"
)

// implemented lists the ModelConfig fields helix-worker acts on, by path
// (repeated and map entries without their index or key). A listed path
// allows the field and everything beneath it; an unlisted message field is
// allowed only as the parent of listed ones. Every other field that a
// config sets is refused at load (checkFields), so that no setting is
// silently ignored. Keep the comment on each entry true: it says where the
// field is implemented.
var implemented = map[string]string{
	"name":                   "Normalize: must match the model folder",
	"platform":               "Normalize: onnxruntime_onnx, pytorch_libtorch, tensorflow_savedmodel or ensemble",
	"backend":                "Normalize: onnxruntime, cuda, pytorch, tensorflow or repeat; workers/backend",
	"version_policy":         "SelectVersions (versions.go): latest, all, specific",
	"max_batch_size":         "Validate; workers/models checks each request's batch size",
	"default_model_filename": "Normalize; workers/models modelFile",
	"parameters":             "passed to the backend's instances (InstanceSpec.Parameters)",

	"input.name":      "Validate; workers/models checkInputs",
	"input.data_type": "Validate; workers/models checkInputs",
	"input.dims":      "Validate; workers/models checkInputs",
	"input.reshape":   "Validate; workers/models reshapes inputs for the backend",
	"input.optional":  "workers/models checkInputs lets the input be absent",
	// Triton uses format only to check dims and to describe the layout to
	// clients (image_client reads it from the model config); so do we.
	"input.format": "served back in the model config for clients",

	"output.name":           "Validate; workers/models checkOutputs",
	"output.data_type":      "Validate",
	"output.dims":           "Validate; workers/models shapes outputs",
	"output.reshape":        "Validate; workers/models reshapes outputs for clients",
	"output.label_filename": "workers/models labels.go: classification labels",

	"dynamic_batching.preferred_batch_size":         "workers/scheduler (dynamic batcher)",
	"dynamic_batching.max_queue_delay_microseconds": "workers/scheduler (dynamic batcher)",
	"dynamic_batching.preserve_ordering":            "workers/scheduler (dynamic batcher)",
	"dynamic_batching.default_queue_policy":         "workers/scheduler: max_queue_size, timeouts, timeout_action",
	// One priority level is plain dynamic batching; Validate refuses more.
	"dynamic_batching.priority_levels": "Validate: more than 1 is refused",

	"instance_group.name":  "a label, as in Triton",
	"instance_group.kind":  "Validate; workers/models placements",
	"instance_group.count": "workers/models placements",
	"instance_group.gpus":  "workers/models placements",

	// Triton's own configs (GET .../config) carry these two; they are
	// about staging copies between host and GPU memory in pinned buffers,
	// which the cuda backend always does and the CPU backends never need.
	"optimization.input_pinned_memory":  "workers/backend/cuda stages inputs in pinned host memory",
	"optimization.output_pinned_memory": "workers/backend/cuda stages outputs in pinned host memory",

	"model_warmup":   "workers/models warmup.go",
	"response_cache": "workers/models cache.go, workers/cache",

	// Checked by their owners' code, which refuses what it does not
	// implement by name: sequence.go, ensemble.go and decoupled.go.
	"sequence_batching":        "sequence.go (workers/sequence)",
	"ensemble_scheduling":      "ensemble.go (workers/ensemble)",
	"model_transaction_policy": "decoupled.go",
}

// isParent reports whether path is the parent of an implemented field.
func isParent(path string) bool {
	for p := range implemented {
		if strings.HasPrefix(p, path+".") {
			return true
		}
	}
	return false
}

// checkFields refuses every field cfg sets that helix-worker does not
// implement, naming each by its full path (e.g.
// "optimization.cuda.graphs" or "instance_group[0].rate_limiter").
// It also refuses response_cache where caching cannot apply.
func checkFields(cfg *pb.ModelConfig) error {
	var refused []string
	walkFields(cfg.ProtoReflect(), "", "", &refused)
	switch len(refused) {
	case 0:
	case 1:
		return fmt.Errorf("%w: %s is not supported by helix-worker", ErrInvalidConfig, refused[0])
	default:
		return fmt.Errorf("%w: %s are not supported by helix-worker", ErrInvalidConfig, strings.Join(refused, ", "))
	}
	if cfg.GetResponseCache().GetEnable() {
		// A cached answer would replay one response of a stream, or skip
		// the state a sequence carries from request to request.
		switch {
		case IsDecoupled(cfg):
			return fmt.Errorf("%w: response_cache cannot be enabled for a decoupled model (model_transaction_policy.decoupled)", ErrInvalidConfig)
		case cfg.GetSequenceBatching() != nil:
			return fmt.Errorf("%w: response_cache cannot be enabled for a model with sequence_batching", ErrInvalidConfig)
		case cfg.Platform == PlatformEnsemble:
			// A step model reloaded under it would leave stale answers.
			return fmt.Errorf("%w: response_cache is not supported for ensembles; enable it on the step models", ErrInvalidConfig)
		}
	}
	return nil
}

// walkFields visits the set fields of m. key is the allow-list path of m
// ("" at the top), shown its path as an error shows it.
func walkFields(m protoreflect.Message, key, shown string, refused *[]string) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		k, s := join(key, string(fd.Name())), join(shown, string(fd.Name()))
		if _, ok := implemented[k]; ok {
			continue
		}
		if !isParent(k) {
			*refused = append(*refused, firstLeaf(m, fd, s))
			continue
		}
		eachMessage(m, fd, s, func(sub protoreflect.Message, subShown string) {
			walkFields(sub, k, subShown, refused)
		})
	}
}

// eachMessage calls f for the message(s) that field fd of m holds: the
// message itself, each element of a list, each value of a map.
func eachMessage(m protoreflect.Message, fd protoreflect.FieldDescriptor, shown string, f func(protoreflect.Message, string)) {
	v := m.Get(fd)
	switch {
	case fd.IsList():
		if fd.Kind() != protoreflect.MessageKind {
			return
		}
		l := v.List()
		for i := range l.Len() {
			f(l.Get(i).Message(), shown+"["+strconv.Itoa(i)+"]")
		}
	case fd.IsMap():
		if fd.MapValue().Kind() != protoreflect.MessageKind {
			return
		}
		mp := v.Map()
		var keys []protoreflect.MapKey
		mp.Range(func(mk protoreflect.MapKey, _ protoreflect.Value) bool {
			keys = append(keys, mk)
			return true
		})
		// Map order is random; errors name the same entry every time.
		slices.SortFunc(keys, func(a, b protoreflect.MapKey) int { return strings.Compare(a.String(), b.String()) })
		for _, mk := range keys {
			k := mk.String()
			if fd.MapKey().Kind() == protoreflect.StringKind {
				k = strconv.Quote(k)
			}
			f(mp.Get(mk).Message(), shown+"["+k+"]")
		}
	case fd.Kind() == protoreflect.MessageKind:
		f(v.Message(), shown)
	}
}

// firstLeaf names the refused field fd as deep as the config sets it, so
// that `optimization { cuda { graphs: true } }` is reported as
// "optimization.cuda.graphs" rather than "optimization".
func firstLeaf(m protoreflect.Message, fd protoreflect.FieldDescriptor, shown string) string {
	out := shown
	found := false
	eachMessage(m, fd, shown, func(sub protoreflect.Message, subShown string) {
		if found {
			return
		}
		found = true
		fields := sub.Descriptor().Fields()
		for i := range fields.Len() {
			if f := fields.Get(i); sub.Has(f) {
				out = firstLeaf(sub, f, join(subShown, string(f.Name())))
				return
			}
		}
		out = subShown
	})
	return out
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
