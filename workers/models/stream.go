package models

import (
	"context"
	"fmt"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/repository"
	"github.com/helixflow/helixflow/workers/scheduler"
	"github.com/helixflow/helixflow/workers/tensor"
)

var _ infer.StreamService = (*Manager)(nil)

// errDecoupledUnary is Triton's answer to ModelInfer on a decoupled model.
const errDecoupledUnary = "ModelInfer RPC doesn't support models with decoupled transaction policy"

// decoupledUnaryError refuses a unary request to a decoupled model, as
// Triton does, naming the streaming endpoints that serve it.
func decoupledUnaryError(model string) error {
	return infer.Errorf(infer.CodeUnimplemented,
		"%s (model '%s' answers a request with zero or more responses: use gRPC ModelStreamInfer or HTTP POST /v2/models/%s/generate_stream)",
		errDecoupledUnary, model, model)
}

// InferStream implements infer.StreamService. A model that is not
// decoupled answers through Infer, in one final call of send. A decoupled
// one runs alone on an instance (scheduler.Request.Send): each response
// goes to send as the model produces it, not final, and a last call with
// final set and no outputs marks the end of the request (Triton's
// TRITONSERVER_RESPONSE_COMPLETE_FINAL).
func (m *Manager) InferStream(ctx context.Context, req *infer.Request, send func(resp *infer.Response, final bool) error) error {
	m.mu.RLock()
	v, err := m.lookup(req.Model, req.Version)
	if err != nil {
		m.mu.RUnlock()
		return err
	}
	if !repository.IsDecoupled(v.config) {
		m.mu.RUnlock()
		resp, err := m.Infer(ctx, req)
		if err != nil {
			return err
		}
		return send(resp, true)
	}
	v.inflight.Add(1)
	m.mu.RUnlock()
	defer v.inflight.Done()

	inputs, err := v.checkInputs(req)
	if err != nil {
		return err
	}
	outputs, err := v.checkOutputs(req)
	if err != nil {
		return err
	}
	timeout := max(req.Timeout, 0)
	// An error of send (the client went away) is what InferStream returns;
	// the scheduler's error then only says the execution stopped.
	var sendErr error
	sreq := &scheduler.Request{Inputs: inputs, Outputs: outputs, Timeout: timeout, Send: func(outs []tensor.Tensor) error {
		resp, err := v.response(req, outputs, outs)
		if err == nil {
			err = send(resp, false)
			sendErr = err
		}
		return err
	}}
	_, err = v.sched.Do(ctx, sreq)
	req.Usage = infer.Usage{Rows: sreq.Usage.Rows, Compute: sreq.Usage.Compute}
	if sendErr != nil {
		return sendErr
	}
	if err != nil {
		return err
	}
	return send(&infer.Response{Model: req.Model, Version: fmt.Sprint(v.number), ID: req.ID}, true)
}

// ModelDecoupled reports whether the version of model that a request would
// reach is decoupled (false when none serves), for front ends that refuse
// decoupled models up front (the WebSocket API).
func (m *Manager) ModelDecoupled(model, version string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, err := m.lookup(model, version)
	return err == nil && repository.IsDecoupled(v.config)
}

// response builds the client's view of one response's outputs (named as
// asked, reshaped back to the configured dims, classified where asked).
func (v *version) response(req *infer.Request, names []string, outs []tensor.Tensor) (*infer.Response, error) {
	resp := &infer.Response{Model: req.Model, Version: fmt.Sprint(v.number), ID: req.ID, Outputs: outs}
	classes := classCounts(req.Outputs)
	for i := range resp.Outputs {
		out := &resp.Outputs[i]
		out.Name = names[i]
		if spec := v.outputs[names[i]]; len(spec.reshape) > 0 {
			out.Shape = batchShape(out.Shape, spec.dims, v.config.MaxBatchSize > 0)
		}
		if k := classes[out.Name]; k > 0 {
			var err error
			if *out, err = classifyLabeled(*out, k, v.config.MaxBatchSize > 0, v.labels[out.Name]); err != nil {
				return nil, err
			}
		}
	}
	return resp, nil
}

// checkDecoupled refuses, at load, a decoupled model whose backend's
// instances cannot answer more than once per request.
func checkDecoupled(cfg *pb.ModelConfig, instances []backend.Instance) error {
	if !repository.IsDecoupled(cfg) {
		return nil
	}
	for _, inst := range instances {
		if _, ok := inst.(backend.DecoupledInstance); !ok {
			return fmt.Errorf("%w: model '%s' sets model_transaction_policy { decoupled: true } but backend %q cannot serve decoupled models",
				repository.ErrInvalidConfig, cfg.Name, cfg.Backend)
		}
	}
	return nil
}
