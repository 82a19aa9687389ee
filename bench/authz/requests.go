package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/helixflow/helixflow/proto/inference"
)

// bodyBytes is how much of the request body Envoy sends with the check
// (with_request_body max_request_bytes, allow_partial_message, packed).
const bodyBytes = 64

// inferCheckRequest is the CheckRequest Envoy sends for a gRPC ModelInfer
// on model "simple", with cred's headers added.
func inferCheckRequest(cred map[string]string) (*authv3.CheckRequest, error) {
	msg, err := proto.Marshal(&inference.ModelInferRequest{
		ModelName: "simple",
		Id:        "bench-1",
		Inputs: []*inference.ModelInferRequest_InferInputTensor{
			{Name: "INPUT0", Datatype: "INT32", Shape: []int64{1, 16}},
			{Name: "INPUT1", Datatype: "INT32", Shape: []int64{1, 16}},
		},
		RawInputContents: [][]byte{make([]byte, 64), make([]byte, 64)},
	})
	if err != nil {
		return nil, err
	}
	frame := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	frame = append(frame, msg...)
	const path = inference.GRPCInferenceService_ModelInfer_FullMethodName
	headers := map[string]string{
		":authority": "127.0.0.1:8001", ":method": "POST", ":path": path, ":scheme": "http",
		"content-type": "application/grpc", "te": "trailers",
		"user-agent":           "grpc-python/1.67.0 grpc-c/43.0.0 (linux; chttp2)",
		"grpc-accept-encoding": "identity, deflate, gzip",
		"x-forwarded-proto":    "http",
		"x-request-id":         "0b6f5c1e-6f3a-4c53-9a51-7d3f3f1f0c2a",
	}
	for k, v := range cred {
		headers[k] = v
	}
	addr := func(port uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: addr(51234)},
		Destination: &authv3.AttributeContext_Peer{Address: addr(8001)},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(time.Now()),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: "1234567890", Method: "POST", Headers: headers, Path: path,
				Host: "127.0.0.1:8001", Scheme: "http", Protocol: "HTTP/2",
				Size: int64(len(frame)), RawBody: frame[:min(bodyBytes, len(frame))],
			},
		},
	}}, nil
}

// checkOp calls Check with req; anything but OK is an error.
func checkOp(cl authv3.AuthorizationClient, req *authv3.CheckRequest) op {
	return func(ctx context.Context) error {
		resp, err := cl.Check(ctx, req)
		if err != nil {
			return err
		}
		if c := resp.GetStatus().GetCode(); c != 0 {
			return fmt.Errorf("check denied: code %d %s", c, resp.GetStatus().GetMessage())
		}
		return nil
	}
}

// tokenClient makes the same client-credentials request to any server:
// client_secret_basic, grant_type and scope in the form.
type tokenClient struct {
	url, basic, form string
	hc               *http.Client
}

func newTokenClient(tokenURL, id, secret string, conns int) *tokenClient {
	// RFC 6749 2.3.1: id and secret are form-encoded before base64.
	basic := base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id) + ":" + url.QueryEscape(secret)))
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {tokenScope}}.Encode()
	return &tokenClient{
		url: tokenURL, basic: "Basic " + basic, form: form,
		hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute, DisableCompression: true,
		}},
	}
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
}

func (t *tokenClient) token(ctx context.Context) (*tokenResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, strings.NewReader(t.form))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", t.basic)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := t.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("token endpoint: HTTP %d: %.200s", resp.StatusCode, body)
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return nil, fmt.Errorf("token endpoint: %w", err)
	}
	if tr.AccessToken == "" {
		return nil, fmt.Errorf("token endpoint: no access_token in %.200s", body)
	}
	return &tr, nil
}

func (t *tokenClient) op(ctx context.Context) error {
	_, err := t.token(ctx)
	return err
}

// jwtHeader decodes the header of a compact JWS; an error if tok is not one.
func jwtHeader(tok string) (map[string]any, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("not a JWT (%d parts)", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("JWT header: %w", err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("JWT header: %w", err)
	}
	return h, nil
}
