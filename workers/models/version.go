package models

import (
	"context"
	"errors"
	"fmt"
	"sync"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/cache"
	"github.com/helixflow/helixflow/workers/infer"
	"github.com/helixflow/helixflow/workers/repository"
	"github.com/helixflow/helixflow/workers/scheduler"
	"github.com/helixflow/helixflow/workers/stats"
	"github.com/helixflow/helixflow/workers/tensor"
)

// version is one loaded, serving model version.
type version struct {
	number  int64
	config  *pb.ModelConfig
	sched   runner
	stats   *stats.Recorder
	inputs  map[string]ioSpec
	outputs map[string]ioSpec
	// outputOrder lists outputs as the config declares them.
	outputOrder []string

	// labels are the outputs' label files (label_filename), one label per
	// line, for classification (labels.go).
	labels map[string][]string

	// cache is the response cache when the config enables it (nil: off);
	// cacheOwner tells this load's answers apart (models/cache.go).
	cache      *cache.Cache
	cacheOwner uint64

	// inflight counts requests that found this version in the model table;
	// Add happens under Manager.mu read lock, so once a version is removed
	// from the table under the write lock no new request can join.
	inflight sync.WaitGroup
}

// runner runs a version's requests: the dynamic batcher
// (scheduler.Scheduler), the sequence batcher (workers/sequence) or an
// ensemble's steps (workers/ensemble).
type runner interface {
	Do(ctx context.Context, r *scheduler.Request) ([]tensor.Tensor, error)
	// Close answers what is still queued UNAVAILABLE and releases the
	// instances once running executions return (bounded by ctx).
	Close(ctx context.Context) error
}

// ioSpec is an input or output as requests see it: dims exclude the batch
// dimension; reshape is what the backend sees instead, if set.
type ioSpec struct {
	name     string
	dataType tensor.DataType
	dims     []int64
	reshape  []int64
	optional bool
}

func newVersion(n int64, cfg *pb.ModelConfig, sched runner, rec *stats.Recorder) (*version, error) {
	v := &version{
		number: n, config: cfg, sched: sched, stats: rec,
		inputs:  make(map[string]ioSpec, len(cfg.Input)),
		outputs: make(map[string]ioSpec, len(cfg.Output)),
	}
	for _, in := range cfg.Input {
		dt, err := repository.TensorType(in.DataType)
		if err != nil {
			return nil, err
		}
		v.inputs[in.Name] = ioSpec{name: in.Name, dataType: dt, dims: in.Dims, reshape: in.GetReshape().GetShape(), optional: in.Optional}
	}
	for _, out := range cfg.Output {
		dt, err := repository.TensorType(out.DataType)
		if err != nil {
			return nil, err
		}
		v.outputs[out.Name] = ioSpec{name: out.Name, dataType: dt, dims: out.Dims, reshape: out.GetReshape().GetShape()}
		v.outputOrder = append(v.outputOrder, out.Name)
	}
	return v, nil
}

// close waits (bounded by ctx) for in-flight requests, then stops the
// scheduler, which closes the backend instances. When the wait runs out the
// scheduler is stopped all the same: it answers what is still queued
// UNAVAILABLE, cancels what is running and closes the instances once those
// executions return; left open, nothing would ever close them. The
// version's statistics go once its last request has left.
func (v *version) close(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		v.inflight.Wait()
		close(done)
	}()
	var drainErr error
	select {
	case <-done:
		defer v.stats.Close()
	case <-ctx.Done():
		drainErr = fmt.Errorf("model %q version %d: in-flight requests still running: %w", v.config.Name, v.number, ctx.Err())
		go func() {
			<-done
			v.stats.Close()
		}()
	}
	if err := v.sched.Close(ctx); err != nil {
		return errors.Join(drainErr, fmt.Errorf("model %q version %d: %w", v.config.Name, v.number, err))
	}
	return drainErr
}

// metadata describes the version's IO as KServe metadata shows it: the
// batch dimension, where the model batches, as -1.
func (v *version) metadata(list map[string]ioSpec, order []string) []infer.TensorMetadata {
	out := make([]infer.TensorMetadata, 0, len(order))
	for _, name := range order {
		s := list[name]
		shape := s.dims
		if v.config.MaxBatchSize > 0 {
			shape = append([]int64{-1}, s.dims...)
		}
		out = append(out, infer.TensorMetadata{Name: s.name, DataType: s.dataType, Shape: shape})
	}
	return out
}

func (v *version) inputOrder() []string {
	names := make([]string, 0, len(v.config.Input))
	for _, in := range v.config.Input {
		names = append(names, in.Name)
	}
	return names
}
