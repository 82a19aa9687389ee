// Package infer is the worker's protocol-neutral API: the requests, responses
// and operations that both the KServe v2 gRPC and HTTP front ends translate
// to and from, and the Service they call.
package infer

import (
	"context"
	"time"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/tensor"
)

// Request is one inference request. Inputs of a batching model carry the
// batch dimension first.
type Request struct {
	Model   string
	Version string // "" means the version the policy picks (highest ready)
	ID      string
	// Parameters are the request's KServe parameters (bool, int64, string,
	// float64 values) other than the ones decoded into fields below.
	Parameters map[string]any
	Inputs     []tensor.Tensor
	// Outputs lists the outputs asked for; empty means all of them.
	Outputs []RequestedOutput
	// Timeout, when positive, bounds the time the request may wait in the
	// queue (Triton's "timeout" parameter, in microseconds on the wire).
	Timeout time.Duration
	// Priority is the request's priority level; 0 means the model's default.
	Priority uint64
	// Usage is filled by Service.Infer, for the usage ledger.
	Usage Usage
}

// RequestedOutput is an output the client asked for.
type RequestedOutput struct {
	Name string
	// Parameters are per-output parameters such as "binary_data" (HTTP) or
	// "classification".
	Parameters map[string]any
}

// Response is the result of a Request.
type Response struct {
	Model      string
	Version    string
	ID         string
	Parameters map[string]any
	Outputs    []tensor.Tensor
}

// TensorMetadata describes a model input or output in metadata responses.
type TensorMetadata struct {
	Name     string
	DataType tensor.DataType
	Shape    []int64
}

// ModelMetadata is the KServe v2 model metadata.
type ModelMetadata struct {
	Name     string
	Versions []string
	Platform string
	Inputs   []TensorMetadata
	Outputs  []TensorMetadata
}

// ServerMetadata is the KServe v2 server metadata.
type ServerMetadata struct {
	Name       string
	Version    string
	Extensions []string
}

// ModelState is a model version's state in the repository index, spelled as
// Triton spells it.
type ModelState string

// Model states.
const (
	StateUnknown     ModelState = "UNKNOWN"
	StateReady       ModelState = "READY"
	StateUnavailable ModelState = "UNAVAILABLE"
	StateLoading     ModelState = "LOADING"
	StateUnloading   ModelState = "UNLOADING"
)

// IndexEntry is one row of the repository index.
type IndexEntry struct {
	Name    string
	Version string // "" for a model that has no loaded version
	State   ModelState
	Reason  string
}

// LoadOptions carries the optional parameters of a repository load request.
type LoadOptions struct {
	// ConfigJSON, when set, replaces the model's config.pbtxt (Triton's
	// "config" parameter, a ModelConfig in JSON).
	ConfigJSON string
	// Files maps "file:<version>/<name>" to contents that override files of
	// the model folder (Triton's file override parameters).
	Files map[string][]byte
}

// Service is what the protocol front ends serve. Every method is safe for
// concurrent use; errors are *Error with a Code.
type Service interface {
	ServerMetadata() ServerMetadata
	Live() bool
	Ready() bool
	ModelReady(ctx context.Context, model, version string) (bool, error)
	ModelMetadata(ctx context.Context, model, version string) (*ModelMetadata, error)
	ModelConfig(ctx context.Context, model, version string) (*pb.ModelConfig, error)
	// ModelStatistics returns statistics for one model ("" for all) and
	// version ("" for all).
	ModelStatistics(ctx context.Context, model, version string) ([]*pb.ModelStatistics, error)
	RepositoryIndex(ctx context.Context, readyOnly bool) ([]IndexEntry, error)
	LoadModel(ctx context.Context, model string, opts LoadOptions) error
	UnloadModel(ctx context.Context, model string, unloadDependents bool) error
	// Infer runs req and fills req.Usage (also when it fails).
	Infer(ctx context.Context, req *Request) (*Response, error)
}

// StreamService is implemented by services that serve decoupled models
// (Triton's model_transaction_policy { decoupled: true }), which answer one
// request with zero or more responses. The front ends' streaming endpoints
// (gRPC ModelStreamInfer, HTTP generate and generate_stream) use it.
type StreamService interface {
	// InferStream runs req and calls send for each response, in order, from
	// one goroutine. The last call has final set; its Response may carry no
	// outputs (Triton's empty final response, which front ends forward only
	// when the client asked for it). A model that is not decoupled makes
	// exactly one call, with final set. An error returned by send ends the
	// request (the client went away) and InferStream returns it. Like Infer
	// it fills req.Usage.
	InferStream(ctx context.Context, req *Request, send func(resp *Response, final bool) error) error
}
