// Command gpu-check-client is the Go half of `make gpu-check`'s bundle: the
// GPU machine has no Go and no gRPC client library, so scripts/gpu-check/
// gpu_check.py drives this binary to talk to helix-worker and to time the
// cuda backend in-process.
//
//	gpu-check-client infer   -addr A -model M -in in.json -out DIR
//	gpu-check-client bench   -addr A -model M -in in.json [-concurrency N] [-duration D]
//	gpu-check-client profile -model-file F [-precision P] [-max-batch B] -batches 1,64 [-iters N]
//
// in.json lists the request's inputs: [{"name", "datatype", "shape",
// "file"}], each file holding the raw little-endian tensor. infer writes
// each output to DIR/<name>.bin and DIR/outputs.json. bench and profile
// print one JSON object.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/workers/backend"
	"github.com/helixflow/helixflow/workers/backend/cuda"
	"github.com/helixflow/helixflow/workers/backend/cuda/exec"
	"github.com/helixflow/helixflow/workers/tensor"
)

type ioFile struct {
	Name     string  `json:"name"`
	DataType string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
	File     string  `json:"file"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gpu-check-client infer|bench|profile [flags]")
		os.Exit(2)
	}
	ctx := context.Background()
	var err error
	switch os.Args[1] {
	case "infer":
		err = runInfer(ctx, os.Args[2:])
	case "bench":
		err = runBench(ctx, os.Args[2:])
	case "profile":
		err = runProfile(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gpu-check-client:", err)
		os.Exit(1)
	}
}

func readInputs(path string) ([]ioFile, [][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var ins []ioFile
	if err := json.Unmarshal(data, &ins); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	raw := make([][]byte, len(ins))
	for i, in := range ins {
		p := in.File
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(path), p)
		}
		if raw[i], err = os.ReadFile(p); err != nil {
			return nil, nil, err
		}
	}
	return ins, raw, nil
}

func request(model string, ins []ioFile, raw [][]byte) *pb.ModelInferRequest {
	req := &pb.ModelInferRequest{ModelName: model, RawInputContents: raw}
	for _, in := range ins {
		req.Inputs = append(req.Inputs, &pb.ModelInferRequest_InferInputTensor{Name: in.Name, Datatype: in.DataType, Shape: in.Shape})
	}
	return req
}

func dial(addr string) (pb.GRPCInferenceServiceClient, io.Closer, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30), grpc.MaxCallSendMsgSize(1<<30)))
	if err != nil {
		return nil, nil, err
	}
	return pb.NewGRPCInferenceServiceClient(conn), conn, nil
}

func runInfer(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("infer", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8001", "worker gRPC address")
	model := fs.String("model", "", "model name")
	in := fs.String("in", "", "inputs manifest (JSON)")
	out := fs.String("out", "", "folder for the outputs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ins, raw, err := readInputs(*in)
	if err != nil {
		return err
	}
	client, conn, err := dial(*addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	resp, err := client.ModelInfer(ctx, request(*model, ins, raw))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	var outs []ioFile
	for i, o := range resp.Outputs {
		if i >= len(resp.RawOutputContents) {
			return fmt.Errorf("output %q has no raw contents", o.Name)
		}
		f := o.Name + ".bin"
		if err := os.WriteFile(filepath.Join(*out, f), resp.RawOutputContents[i], 0o644); err != nil {
			return err
		}
		outs = append(outs, ioFile{Name: o.Name, DataType: o.Datatype, Shape: o.Shape, File: f})
	}
	data, _ := json.MarshalIndent(outs, "", " ")
	return os.WriteFile(filepath.Join(*out, "outputs.json"), data, 0o644)
}

// benchResult is one throughput measurement.
type benchResult struct {
	Model       string  `json:"model"`
	Batch       int64   `json:"batch"`
	Concurrency int     `json:"concurrency"`
	Requests    int     `json:"requests"`
	Errors      int     `json:"errors"`
	Seconds     float64 `json:"seconds"`
	ItemsPerSec float64 `json:"items_per_s"`
	P50Ms       float64 `json:"p50_ms"`
	P90Ms       float64 `json:"p90_ms"`
	P99Ms       float64 `json:"p99_ms"`
	FirstError  string  `json:"first_error,omitempty"`
}

func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(len(sorted)-1, int(p*float64(len(sorted))))
	return float64(sorted[i].Microseconds()) / 1000
}

func runBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8001", "worker gRPC address")
	model := fs.String("model", "", "model name")
	in := fs.String("in", "", "inputs manifest (JSON)")
	conc := fs.Int("concurrency", 1, "requests in flight")
	dur := fs.Duration("duration", 3*time.Second, "measuring time")
	warm := fs.Duration("warmup", time.Second, "warm-up time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ins, raw, err := readInputs(*in)
	if err != nil {
		return err
	}
	client, conn, err := dial(*addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	req := request(*model, ins, raw)
	batch := int64(1)
	if len(ins) > 0 && len(ins[0].Shape) > 0 {
		batch = ins[0].Shape[0]
	}
	run := func(d time.Duration) ([]time.Duration, int, string, float64) {
		var (
			mu       sync.Mutex
			lat      []time.Duration
			errs     int
			firstErr string
			wg       sync.WaitGroup
		)
		start := time.Now()
		deadline := start.Add(d)
		for range *conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					t := time.Now()
					_, err := client.ModelInfer(ctx, req)
					el := time.Since(t)
					mu.Lock()
					if err != nil {
						errs++
						if firstErr == "" {
							firstErr = err.Error()
						}
					} else {
						lat = append(lat, el)
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return lat, errs, firstErr, time.Since(start).Seconds()
	}
	run(*warm)
	lat, errs, firstErr, secs := run(*dur)
	slices.Sort(lat)
	res := benchResult{
		Model: *model, Batch: batch, Concurrency: *conc, Requests: len(lat), Errors: errs, Seconds: secs,
		ItemsPerSec: float64(int64(len(lat))*batch) / secs,
		P50Ms:       percentile(lat, 0.5), P90Ms: percentile(lat, 0.9), P99Ms: percentile(lat, 0.99), FirstError: firstErr,
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

type profileStep struct {
	Node   string  `json:"node"`
	Kind   string  `json:"kind"`
	Ms     float64 `json:"ms"`
	M      int64   `json:"m,omitempty"`
	N      int64   `json:"n,omitempty"`
	K      int64   `json:"k,omitempty"`
	Count  int64   `json:"batch,omitempty"`
	TFLOPS float64 `json:"tflops,omitempty"`
}

type profileResult struct {
	Batch int64 `json:"batch"`
	// EngineItemsPerSec runs Execute in a loop in-process (host copies
	// included, no gRPC).
	EngineItemsPerSec float64       `json:"engine_items_per_s"`
	EngineP50Ms       float64       `json:"engine_p50_ms"`
	StepsMs           float64       `json:"steps_ms"`
	Steps             []profileStep `json:"steps"`
}

// runProfile loads a model with the cuda backend in this process and
// times it: Execute in a loop, and each step with CUDA events.
func runProfile(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("profile", flag.ContinueOnError)
	file := fs.String("model-file", "", "ONNX model")
	precision := fs.String("precision", "fp32", "fp32, tf32, fp16 or bf16")
	maxBatch := fs.Int("max-batch", 256, "max_batch_size")
	batches := fs.String("batches", "1,64,256", "batch sizes to time")
	iters := fs.Int("iters", 50, "Execute calls per batch size")
	graphs := fs.String("graphs", "", "cuda_graph_batch_sizes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b := cuda.New(cuda.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	inputs, _, err := b.Inspect(ctx, *file)
	if err != nil {
		return err
	}
	params := map[string]string{cuda.ParamPrecision: *precision}
	if *graphs != "" {
		params[cuda.ParamGraphBatchSizes] = *graphs
	}
	inst, err := b.NewInstance(ctx, backend.InstanceSpec{ModelName: filepath.Base(*file), ModelPath: *file, Device: "gpu",
		MaxBatchSize: *maxBatch, Parameters: params, Inputs: inputs})
	if err != nil {
		return err
	}
	defer inst.Close()
	ci, ok := inst.(*cuda.Instance)
	if !ok {
		return errors.New("not a cuda instance")
	}
	var results []profileResult
	for _, f := range strings.Split(*batches, ",") {
		batch, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil {
			return err
		}
		var ts []tensor.Tensor
		for _, in := range inputs {
			shape := slices.Clone(in.Shape)
			shape[0] = batch
			n, _ := tensor.ByteSize(in.DataType, shape)
			ts = append(ts, tensor.Tensor{Name: in.Name, DataType: in.DataType, Shape: shape, Data: make([]byte, n)})
		}
		for range 5 {
			if _, err := inst.Execute(ctx, ts, nil); err != nil {
				return err
			}
		}
		lat := make([]time.Duration, 0, *iters)
		start := time.Now()
		for range *iters {
			t := time.Now()
			if _, err := inst.Execute(ctx, ts, nil); err != nil {
				return err
			}
			lat = append(lat, time.Since(t))
		}
		secs := time.Since(start).Seconds()
		slices.Sort(lat)
		// Each step's fastest of a few runs: one run's events are noisy
		// for steps of a few microseconds.
		var steps []exec.StepTime
		for range 5 {
			run, err := ci.Profile(batch)
			if err != nil {
				return err
			}
			if steps == nil {
				steps = run
				continue
			}
			for i := range steps {
				steps[i].Millis = min(steps[i].Millis, run[i].Millis)
			}
		}
		r := profileResult{Batch: batch, EngineItemsPerSec: float64(batch*int64(*iters)) / secs, EngineP50Ms: percentile(lat, 0.5)}
		for _, s := range steps {
			ps := profileStep{Node: s.Node, Kind: s.Kind, Ms: s.Millis, M: s.M, N: s.N, K: s.K, Count: s.Batch}
			if s.Kind == "gemm" && s.Millis > 0 {
				ps.TFLOPS = 2 * float64(s.M*s.N*s.K*s.Batch) / (s.Millis / 1000) / 1e12
			}
			r.StepsMs += s.Millis
			r.Steps = append(r.Steps, ps)
		}
		results = append(results, r)
	}
	return json.NewEncoder(os.Stdout).Encode(results)
}
