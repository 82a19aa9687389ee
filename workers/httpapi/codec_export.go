package httpapi

import (
	"github.com/helixflow/helixflow/workers/infer"
)

// The JSON and binary inference codec, exported for the WebSocket front end
// (workers/wsapi), whose messages are these same requests and responses.

// InferCall is a decoded inference request: what to ask the Service and how
// to encode its answer.
type InferCall struct{ c *inferCall }

// Request is the request to pass to infer.Service.Infer.
func (c *InferCall) Request() *infer.Request { return c.c.req }

// BinaryOutput reports whether output name is to be answered as binary
// data (its binary_data parameter, else the request's binary_data_output).
func (c *InferCall) BinaryOutput(name string) bool { return c.c.optionsFor(name).binary }

// DecodeInferRequest decodes a KServe v2 inference request whose first
// headerLen bytes of body are the JSON header and the rest the binary
// inputs of Triton's binary data extension, in input order. Binary input
// data aliases body. maxBytes bounds the decoded size of each JSON input.
// Errors are *infer.Error naming what was wrong.
func DecodeInferRequest(model, version string, body []byte, headerLen int, maxBytes int64) (*InferCall, error) {
	c, err := decodeInferRequest(model, version, body, headerLen, maxBytes)
	if err != nil {
		return nil, err
	}
	return &InferCall{c: c}, nil
}

// EncodeInferResponse appends the JSON part of resp's answer to dst and
// returns the binary outputs to send after it, in order (they alias the
// response's tensors).
func EncodeInferResponse(dst []byte, resp *infer.Response, call *InferCall) ([]byte, [][]byte, error) {
	return encodeInferResponse(dst, resp, call.c)
}

// HTTPStatus is the HTTP status the REST front end answers err with.
func HTTPStatus(err error) int { return httpStatus(err) }
