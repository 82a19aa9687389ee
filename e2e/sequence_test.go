package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/proto/inference"
	"github.com/helixflow/helixflow/xds/translate"
)

// seqModel is the sample accumulator with implicit state (oldest
// strategy, string CORRID): OUTPUT = INPUT + the sequence's state +
// END * CORRID, the state being the last OUTPUT. A step that reaches a
// worker that does not hold its sequence is refused ("START").
const seqModel = "simple_string_dyna_sequence"

// seqStepWant is OUTPUT after step k of sequence id when step j sent j+1:
// the sum so far, plus the id at the end.
func seqStepWant(id, k, steps int) int32 {
	want := int32((k + 1) * (k + 2) / 2)
	if k == steps-1 {
		want += int32(id)
	}
	return want
}

func seqGRPCStep(ctx context.Context, c inference.GRPCInferenceServiceClient, id, k, steps int) (int32, error) {
	raw := make([]byte, 4)
	binary.LittleEndian.PutUint32(raw, uint32(k+1))
	resp, err := c.ModelInfer(ctx, &inference.ModelInferRequest{
		ModelName: seqModel,
		Parameters: map[string]*inference.InferParameter{
			"sequence_id":    {ParameterChoice: &inference.InferParameter_StringParam{StringParam: strconv.Itoa(id)}},
			"sequence_start": {ParameterChoice: &inference.InferParameter_BoolParam{BoolParam: k == 0}},
			"sequence_end":   {ParameterChoice: &inference.InferParameter_BoolParam{BoolParam: k == steps-1}},
		},
		Inputs:           []*inference.ModelInferRequest_InferInputTensor{{Name: "INPUT", Datatype: "INT32", Shape: []int64{1, 1}}},
		RawInputContents: [][]byte{raw},
	})
	if err != nil {
		return 0, err
	}
	if len(resp.GetRawOutputContents()) != 1 || len(resp.GetRawOutputContents()[0]) != 4 {
		return 0, fmt.Errorf("outputs %v", resp)
	}
	return int32(binary.LittleEndian.Uint32(resp.GetRawOutputContents()[0])), nil
}

func (s *stack) seqRESTStep(ctx context.Context, c *http.Client, token string, id, k, steps int) (int32, error) {
	body := fmt.Sprintf(`{"inputs":[{"name":"INPUT","shape":[1,1],"datatype":"INT32","data":[%d]}],`+
		`"parameters":{"sequence_id":"%d","sequence_start":%v,"sequence_end":%v}}`, k+1, id, k == 0, k == steps-1)
	code, b, err := s.restPost(ctx, c, seqModel, []byte(body), token, nil)
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("%d %s", code, b)
	}
	var r struct {
		Outputs []struct {
			Data []int32 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(b, &r); err != nil || len(r.Outputs) != 1 || len(r.Outputs[0].Data) != 1 {
		return 0, fmt.Errorf("answer %s (%v)", b, err)
	}
	return r.Outputs[0].Data[0], nil
}

// runSeqs runs sequences first..first+n-1, steps from..to-1 of steps each,
// side by side, and fails on any error or wrong sum.
func runSeqs(t *testing.T, first, n, from, to, steps int, step func(id, k int) (int32, error)) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for id := first; id < first+n; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := from; k < to; k++ {
				got, err := step(id, k)
				if err == nil && got != seqStepWant(id, k, steps) {
					err = fmt.Errorf("OUTPUT %d, want %d", got, seqStepWant(id, k, steps))
				}
				if err != nil {
					errs <- fmt.Errorf("sequence %d step %d: %w", id, k, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// longIdleRepository holds seqModel with its idle timeout raised from 5 s
// to 2 min, so that the wait for helix-xds to drop a killed worker (its
// lease) does not also expire the surviving worker's sequences, and room
// for 64 open sequences.
func longIdleRepository(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(repoRoot, "models", seqModel)
	cfg, err := os.ReadFile(filepath.Join(src, "config.pbtxt"))
	if err != nil {
		t.Fatal(err)
	}
	const idle = "max_sequence_idle_microseconds: 5000000"
	if !bytes.Contains(cfg, []byte(idle)) {
		t.Fatalf("%s/config.pbtxt has no %q", src, idle)
	}
	cfg = bytes.Replace(cfg, []byte(idle), []byte("max_sequence_idle_microseconds: 120000000"), 1)
	// Room for every sequence the test keeps open at once: past
	// max_candidate_sequences a new sequence waits (Triton's backlog).
	const candidates = "max_candidate_sequences: 8"
	if !bytes.Contains(cfg, []byte(candidates)) {
		t.Fatalf("%s/config.pbtxt has no %q", src, candidates)
	}
	cfg = bytes.Replace(cfg, []byte(candidates), []byte("max_candidate_sequences: 64"), 1)
	// The version folder must be a folder (the repository does not
	// follow a linked one); its model file may be a link.
	if err := os.MkdirAll(filepath.Join(dir, seqModel, "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, seqModel, "config.pbtxt"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(src, "1", "model.onnx"), filepath.Join(dir, seqModel, "1", "model.onnx")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// inferences is the model's inference count on w, asked of w directly.
func (w *worker) inferences(t *testing.T, model string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := httpGet(ctx, w.health, w.healthBase+wire.RESTModelPath(model, "", "stats"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		ModelStats []struct {
			InferenceCount int `json:"inference_count"`
		} `json:"model_stats"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range st.ModelStats {
		n += m.InferenceCount
	}
	return n
}

// Issue 23's sequence routing through the whole stack: two registered
// helix-workers serve the stateful accumulator, and 50 sequences of 5
// steps over gRPC and 50 over REST (JSON tensors, tritonclient's order:
// parameters last) all answer the right running sums, which they could
// not if a step reached the other worker; both workers take sequences.
// Then a worker is killed mid-sequence: the sequences it held get the
// surviving worker's "START" error naming them, the others go on.
func TestSequenceRouting(t *testing.T) {
	parent := t
	s := startStack(t, stackOptions{selfRegister: true})
	all := s.clients["all"]
	repo := longIdleRepository(t)
	w1 := s.startWorker(parent, workerSpec{name: "helix-worker-seq-1", repo: repo, models: []string{seqModel}, register: true})
	w2 := s.startWorker(parent, workerSpec{name: "helix-worker-seq-2", repo: repo, models: []string{seqModel}, register: true})
	w1.waitReady(t)
	w2.waitReady(t)
	s.waitHealthy(t, translate.GRPCCluster(seqModel), w1, w2)
	s.waitHealthy(t, translate.GRPCSequenceCluster(seqModel), w1, w2)

	infer := inference.NewGRPCInferenceServiceClient(s.grpcConn(t))
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+all.token), 3*time.Minute)
	defer cancel()
	https := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.caPool, MinVersion: tls.VersionTLS12},
	}}

	const n, steps = 50, 5
	t.Run("gRPC sequences stay on one worker", func(t *testing.T) {
		runSeqs(t, 1000, n, 0, steps, steps, func(id, k int) (int32, error) { return seqGRPCStep(ctx, infer, id, k, steps) })
	})
	t.Run("REST sequences stay on one worker", func(t *testing.T) {
		runSeqs(t, 2000, n, 0, steps, steps, func(id, k int) (int32, error) { return s.seqRESTStep(ctx, https, all.token, id, k, steps) })
	})
	a, b := w1.inferences(t, seqModel), w2.inferences(t, seqModel)
	t.Logf("inferences: %s %d, %s %d", w1.name, a, w2.name, b)
	if a == 0 || b == 0 || a+b != 2*n*steps {
		t.Fatalf("inferences %d + %d, want both workers used and %d in all", a, b, 2*n*steps)
	}

	t.Run("a worker killed mid-sequence: its sequences are lost, by name", func(t *testing.T) {
		const m = 20
		runSeqs(t, 3000, m, 0, 2, 4, func(id, k int) (int32, error) { return seqGRPCStep(ctx, infer, id, k, 4) })
		s.kill(t, w1)
		// helix-xds drops it when its lease lapses; Envoy's sequence
		// cluster then hashes its sequences to w2.
		s.waitHealthy(t, translate.GRPCSequenceCluster(seqModel), w2)
		lost, kept := 0, 0
		for id := 3000; id < 3000+m; id++ {
			got, err := seqGRPCStep(ctx, infer, id, 2, 4)
			switch {
			case err == nil && got == seqStepWant(id, 2, 4):
				kept++
			case status.Code(err) == codes.InvalidArgument && strings.Contains(err.Error(), "START") && strings.Contains(err.Error(), strconv.Itoa(id)):
				if lost == 0 {
					t.Logf("a lost sequence's next step: %v", err)
				}
				lost++
			default:
				t.Errorf("sequence %d after the kill: %d, %v", id, got, err)
			}
		}
		t.Logf("after the kill: %d sequences went on, %d were lost with the worker", kept, lost)
		if lost == 0 || kept == 0 {
			t.Errorf("%d lost, %d kept: want both (the sequences were spread over both workers)", lost, kept)
		}
	})
}
