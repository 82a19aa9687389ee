package stack

import (
	"fmt"
	"io"
	"strings"
)

// PrintWelcome prints what runs where and examples that work as printed
// from the repository root.
func (s *Stack) PrintWelcome(w io.Writer, demo Demo) error {
	models, err := s.Models()
	if err != nil {
		return err
	}
	p := s.Ports
	var http, grpc []string
	for _, wp := range p.Workers {
		http, grpc = append(http, fmt.Sprintf(":%d", wp.HTTP)), append(grpc, fmt.Sprintf(":%d", wp.GRPC))
	}
	workers := fmt.Sprintf("%d", len(p.Workers))
	if len(p.Workers) == 2 {
		workers = "two"
	}
	_, err = fmt.Fprintf(w, `
HelixFlow local stack (state and logs in .helix/; addresses and demo credentials in .helix/local.env):
  Envoy         https://127.0.0.1:%d (gRPC and REST, TLS; CA .helix/pki/ca.crt), admin 127.0.0.1:%d
  portal        %s (sign up, models, API keys, usage; helix-authz's public
                port behind Envoy, with /api/v1 and /oauth2)
  helix-xds     xDS + worker registry 127.0.0.1:%d (mTLS), status http://127.0.0.1:%d/status
  helix-authz   token URL %s, ext_authz 127.0.0.1:%d (mTLS from Envoy: token or key,
                scope, and the plan's rate limit), admin API %s
  helix-worker  %s, serving %s (HTTP %s, gRPC %s, mTLS from Envoy only)
  Postgres      127.0.0.1:%d (clients, keys); Redis 127.0.0.1:%d (helix-authz's rate-limit counters)
  Prometheus    http://127.0.0.1:%d (rules: alerts/rules), Alertmanager http://127.0.0.1:%d
  mailpit       SMTP 127.0.0.1:%d takes helix-authz's mails (sign-up, reset links);
                read them through its API: curl %s/api/v1/messages
%s  demo client   %s, plan standard (1000 requests/s per model), scopes models:infer models:read;
                the plans are in .helix/gateway.yaml (edits are hot-reloaded)

Try (tokens last 5 minutes; fetch a new one when calls answer 401):
%s
Ctrl-C stops everything.
`, p.Gateway, p.EnvoyAdmin, s.PortalURL(), p.XDS, p.XDSStatus, s.TokenURL(), p.ExtAuthz, s.AdminURL(),
		workers, strings.Join(models, " "), strings.Join(http, "/"), strings.Join(grpc, "/"),
		p.Postgres, p.Redis, p.Prometheus, p.Alertmanager, p.MailpitSMTP, s.MailpitURL, s.jaegerWelcome(), demo.ID, examples)
	return err
}

// examples work as printed from the repository root, once the stack runs.
const examples = `  source .helix/local.env
  export HELIX_TOKEN=$(curl -s --cacert "$HELIX_CA_FILE" -u "$HELIX_CLIENT_ID:$HELIX_CLIENT_SECRET" \
    -d grant_type=client_credentials "$HELIX_TOKEN_URL" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

  curl -s --cacert "$HELIX_CA_FILE" -H "authorization: Bearer $HELIX_TOKEN" "$HELIX_HTTPS_URL/v2/models/simple/infer" -d '{"inputs":[
    {"name":"INPUT0","shape":[1,16],"datatype":"INT32","data":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]},
    {"name":"INPUT1","shape":[1,16],"datatype":"INT32","data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]}]}'

  .venv/bin/python - <<'PY'
import os
import numpy as np
import tritonclient.grpc as grpcclient

client = grpcclient.InferenceServerClient(os.environ["HELIX_GRPC_ADDR"], ssl=True,
                                          root_certificates=os.environ["HELIX_CA_FILE"])
auth = {"authorization": "Bearer " + os.environ["HELIX_TOKEN"]}
a = np.arange(16, dtype=np.int32).reshape(1, 16)
inputs = [grpcclient.InferInput("INPUT0", [1, 16], "INT32"), grpcclient.InferInput("INPUT1", [1, 16], "INT32")]
inputs[0].set_data_from_numpy(a)
inputs[1].set_data_from_numpy(np.ones_like(a))
print(client.infer("simple", inputs, headers=auth).as_numpy("OUTPUT0"))
PY

  .venv/bin/perf_analyzer -m simple -i grpc -u "$HELIX_GRPC_ADDR" --ssl-grpc-use-ssl true \
    --ssl-grpc-root-certifications-file "$HELIX_CA_FILE" -H "authorization:Bearer $HELIX_TOKEN" \
    --concurrency-range 4 --request-count 5000

  bin/helixctl clients list
  bin/helixctl alerts list
`

// jaegerWelcome is the summary's Jaeger line, or nothing without tracing.
func (s *Stack) jaegerWelcome() string {
	if !s.opts.Tracing {
		return ""
	}
	state := fmt.Sprintf("gateway sampling %g; spans in over OTLP/gRPC on 127.0.0.1:%d", s.traceSampling(), s.Ports.JaegerOTLP)
	if s.JaegerPending() {
		state = "building in the background (.helix/logs/jaeger-build.log, a few minutes\n" +
			"                the first time); it starts when built, until then spans are dropped"
	}
	return fmt.Sprintf("  Jaeger        %s (HELIX_JAEGER_URL: the query API, /api/traces; %s)\n", s.JaegerURL(), state)
}
