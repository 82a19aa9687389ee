package check

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/helixflow/helixflow/internal/wire"
	"github.com/helixflow/helixflow/proto/inference"
)

// FuzzModelFromGRPCBody: no panic on any bytes, and whenever the whole
// message was read and accepted, the protobuf runtime (what the worker
// uses) agrees on model_name and model_version.
func FuzzModelFromGRPCBody(f *testing.F) {
	seed := func(m proto.Message, limit int) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(frame(b, limit))
	}
	seed(&inference.ModelInferRequest{ModelName: "resnet", ModelVersion: "1", RawInputContents: [][]byte{make([]byte, 100)}}, 0)
	seed(&inference.ModelInferRequest{ModelName: "resnet", ModelVersion: "1", RawInputContents: [][]byte{make([]byte, 100)}}, 64)
	seed(&inference.ModelInferRequest{Id: "x", ModelName: "bert"}, 0)
	seed(&inference.ModelStatisticsRequest{}, 0)
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Add(frame(append(protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "a"),
		protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "b")...), 0))
	f.Add(frame(protowire.AppendTag(nil, 3, protowire.StartGroupType), 0))

	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := modelFromGRPCBody(body)
		if err != nil {
			return
		}
		if m.nameSeen && !bytes.Contains(body, []byte(m.name)) {
			t.Fatalf("name %q is not in the body", m.name)
		}
		if !m.complete {
			return
		}
		n := binary.BigEndian.Uint32(body[1:5])
		var req inference.ModelInferRequest
		if proto.Unmarshal(body[5:5+n], &req) != nil {
			return // the worker refuses it too
		}
		if req.GetModelName() != m.name || req.GetModelVersion() != m.version {
			t.Fatalf("read (%q, %q), protobuf reads (%q, %q)", m.name, m.version, req.GetModelName(), req.GetModelVersion())
		}
	})
}

// FuzzCheck drives the whole check with arbitrary paths, credentials and
// bodies for a client allowed only model "resnet": nothing may panic, and
// no input may reach another model.
func FuzzCheck(f *testing.F) {
	e := newEnv(f)
	tok := e.mint(f, claims([]string{"models:resnet:infer", "models:read"}, []string{"resnet"}))
	body := inferBody(f, "resnet", "1", 64)
	f.Add("/v2/models/resnet/infer", "Bearer "+tok, "application/json", []byte(nil))
	f.Add("/v2/models/resnet/versions/2/ready", "Bearer "+tok, "application/json", []byte(nil))
	f.Add("/v2/models/stats", "Bearer "+tok, "application/json", []byte(nil))
	f.Add("/inference.GRPCInferenceService/ModelInfer", "Bearer "+tok, "application/grpc", body)
	f.Add("/inference.GRPCInferenceService/ModelStatistics", "Bearer "+tok, "application/grpc", frame(nil, 0))
	f.Add("/inference.GRPCInferenceService/ModelStreamInfer", "Bearer "+tok, "application/grpc", []byte(nil))
	f.Add("/v2/models/bert/infer", "Bearer hx_x", "application/json", []byte(nil))
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, path, auth, contentType string, body []byte) {
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "POST", Path: path, RawBody: body,
				Headers: map[string]string{"authorization": auth, "content-type": contentType}},
		}}}
		resp, err := e.svc.Check(ctx, req)
		if err != nil || resp == nil {
			t.Fatalf("Check: %v, %v", resp, err)
		}
		ok := resp.GetOkResponse()
		if ok == nil {
			return
		}
		for _, h := range ok.GetHeaders() {
			if h.GetHeader().GetKey() == wire.HeaderModel && h.GetHeader().GetValue() != "resnet" {
				t.Fatalf("allowed model %q", h.GetHeader().GetValue())
			}
		}
	})
}
