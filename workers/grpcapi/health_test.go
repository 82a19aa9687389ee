package grpcapi

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestHealthCheck(t *testing.T) {
	const (
		serving    = healthpb.HealthCheckResponse_SERVING
		notServing = healthpb.HealthCheckResponse_NOT_SERVING
	)
	svc := newFakeService()
	h := startServer(t, svc).health
	cases := []struct {
		service     string
		serverReady bool
		want        healthpb.HealthCheckResponse_ServingStatus
	}{
		{"", true, serving},
		{"inference.GRPCInferenceService", true, serving},
		{"simple", true, serving},
		{"cold", true, notServing},
		{"", false, notServing},
		{"inference.GRPCInferenceService", false, notServing},
		{"simple", false, notServing},
	}
	for _, tc := range cases {
		svc.setReady(tc.serverReady)
		resp, err := h.Check(t.Context(), &healthpb.HealthCheckRequest{Service: tc.service})
		if err != nil || resp.GetStatus() != tc.want {
			t.Errorf("Check(%q) with server ready=%v = %v, %v; want %v", tc.service, tc.serverReady, resp.GetStatus(), err, tc.want)
		}
	}
	_, err := h.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "nope"})
	wantCode(t, err, codes.NotFound, `unknown service or model "nope"`)
}

func TestHealthList(t *testing.T) {
	h := startServer(t, newFakeService()).health
	resp, err := h.List(t.Context(), &healthpb.HealthListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]healthpb.HealthCheckResponse_ServingStatus{
		"":                               healthpb.HealthCheckResponse_SERVING,
		"inference.GRPCInferenceService": healthpb.HealthCheckResponse_SERVING,
		"simple":                         healthpb.HealthCheckResponse_SERVING,
		"cold":                           healthpb.HealthCheckResponse_NOT_SERVING,
	}
	if len(resp.GetStatuses()) != len(want) {
		t.Fatalf("List = %v, want %v", resp.GetStatuses(), want)
	}
	for name, st := range want {
		if resp.GetStatuses()[name].GetStatus() != st {
			t.Errorf("List[%q] = %v, want %v", name, resp.GetStatuses()[name].GetStatus(), st)
		}
	}
}

func TestHealthWatch(t *testing.T) {
	svc := newFakeService()
	h := startServer(t, svc).health
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	stream, err := h.Watch(ctx, &healthpb.HealthCheckRequest{Service: "simple"})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first Watch status = %v, %v; want SERVING", resp.GetStatus(), err)
	}
	svc.setReady(false)
	if resp, err := stream.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch status after the server stopped being ready = %v, %v; want NOT_SERVING", resp.GetStatus(), err)
	}

	unknown, err := h.Watch(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := unknown.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVICE_UNKNOWN {
		t.Fatalf("Watch of an unknown model = %v, %v; want SERVICE_UNKNOWN", resp.GetStatus(), err)
	}
}
