package main

import (
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// Label selectors shared by the dashboards.
const (
	// gatewayHCM is the gateway listener's connection manager (Envoy's
	// admin listener has its own).
	gatewayHCM = `envoy_http_conn_manager_prefix="helix"`
	// modelPools are the clusters helix-xds makes per model:
	// helix-model-grpc_<model> and helix-model-http_<model>. The second
	// matcher leaves out variant clusters, which "All" ($model .*) would
	// match: a model name has no '/', a variant's stat name has one.
	modelPools = `envoy_cluster_name=~"helix-model-(grpc|http)(?:-seq)?_($model)", envoy_cluster_name!~".*/.*"`
	// variantPools are the clusters of a traffic policy's variants
	// (translate.GRPCVariantCluster, HTTPVariantCluster), stat names
	// (translate.ClusterStatName) helix-model-grpc_<model>/<variant>, the
	// variant [a-z0-9-].
	variantPools = `envoy_cluster_name=~"helix-model-(grpc|http)_($model)/[a-z0-9-]+"`
)

// byVariant adds the model and variant labels, taken from a variant
// cluster's name (the variant is what follows the '/').
func byVariant(expr string) string {
	return `label_replace(label_replace(` + expr + `, "model", "$1", "envoy_cluster_name", "helix-model-(?:grpc|http)_([^/]+)/[a-z0-9-]+"), ` +
		`"variant", "$1", "envoy_cluster_name", "helix-model-(?:grpc|http)_[^/]+/([a-z0-9-]+)")`
}

// byModel adds the model and protocol labels, taken from the cluster
// name, to an expression over Envoy's cluster stats.
func byModel(expr string) string {
	return `label_replace(label_replace(` + expr + `, "model", "$1", "envoy_cluster_name", "helix-model-(?:grpc|http)(?:-seq)?_([^/]+)"), ` +
		`"protocol", "$1", "envoy_cluster_name", "helix-model-(grpc|http)(?:-seq)?_[^/]+")`
}

// quantiles are p50, p95 and p99 of a histogram, summed by the labels.
func quantiles(bucket, selector, by, legend string) []q {
	var out []q
	for _, p := range []struct{ v, name string }{{"0.5", "p50"}, {"0.95", "p95"}, {"0.99", "p99"}} {
		out = append(out, q{
			expr:   `histogram_quantile(` + p.v + `, sum by (` + by + `) (rate(` + bucket + `{` + selector + `}[$__rate_interval])))`,
			legend: legend + p.name,
		})
	}
	return out
}

func gatewayDashboard() *dashboard.DashboardBuilder {
	return newDashboard("helix-gateway", "HelixFlow / Gateway",
		"Envoy's view of the gateway: requests, errors and latency by model and route, clients (from helix-authz) and rate limits.").
		WithVariable(queryVar("model", "Model", `label_values(model:envoy_upstream_requests:rate5m, model)`)).
		WithRow(row("Overview")).
		WithPanel(single("Requests", "Requests to the gateway listener, per second.", "reqps", 0,
			q{`sum(rate(envoy_http_downstream_rq_total{` + gatewayHCM + `}[$__rate_interval]))`, ""})).
		WithPanel(single("5xx answers", "Share of gateway requests answered with 5xx (alert: HelixGatewayErrorRatio above 5%).", "percentunit", 0.05,
			q{`helix:gateway_errors:ratio_rate5m`, ""})).
		WithPanel(single("Slower than 500 ms (1h)", "Share of requests slower than 500 ms over the last hour; the SLO allows 1%.", "percentunit", 0.01,
			q{`helix:gateway_slow_requests:ratio_rate1h`, ""})).
		WithPanel(single("Rate-limited", "Requests refused for being over their plan's limit, per second.", "reqps", 0,
			q{`sum(rate(helix_authz_ratelimit_decisions_total{result="over_limit"}[$__rate_interval]))`, ""})).
		WithRow(row("Traffic")).
		WithPanel(graph("Requests by response class", "Gateway answers by HTTP status class. gRPC errors travel with HTTP 200; see the inference dashboard for those.", "reqps", 12,
			q{`sum by (envoy_response_code_class) (rate(envoy_http_downstream_rq_xx{` + gatewayHCM + `}[$__rate_interval]))`, "{{envoy_response_code_class}}xx"})).
		WithPanel(graph("Requests by model and route", "Requests forwarded to each model's pool, gRPC or REST.", "reqps", 12,
			q{`sum by (model, protocol) (model:envoy_upstream_requests:rate5m{model=~"$model"})`, "{{model}} {{protocol}}"})).
		WithPanel(graph("5xx by model and route", "Upstream 5xx answers per model pool.", "reqps", 12,
			q{`sum by (model, protocol) (model:envoy_upstream_requests:rate5m{model=~"$model", envoy_response_code_class="5"})`, "{{model}} {{protocol}}"})).
		WithPanel(graph("Requests by client", "The ten busiest clients, by helix-authz's count of their checked requests.", "reqps", 12,
			q{`topk(10, sum by (client) (rate(helix_authz_client_requests_total[$__rate_interval])))`, "{{client}}"})).
		WithRow(row("Latency")).
		WithPanel(graph("Gateway latency", "Time from the first byte of a request to the last byte of its answer, at Envoy.", "ms", 12,
			quantiles("envoy_http_downstream_rq_time_bucket", gatewayHCM, "le", "")...)).
		WithPanel(graph("p99 latency by model and route", "Upstream request time per model pool (worker time plus the network).", "ms", 12,
			q{`histogram_quantile(0.99, sum by (le, model, protocol) (` + byModel(`rate(envoy_cluster_upstream_rq_time_bucket{`+modelPools+`}[$__rate_interval])`) + `))`, "{{model}} {{protocol}}"})).
		WithPanel(graph("Latency SLO", "Share of requests slower than 500 ms over three windows; the SLO is 1% (alerts: HelixLatencySLOBurnFast, HelixLatencySLOBurnSlow).", "percentunit", 24,
			q{`helix:gateway_slow_requests:ratio_rate5m`, "5m"},
			q{`helix:gateway_slow_requests:ratio_rate1h`, "1h"},
			q{`helix:gateway_slow_requests:ratio_rate6h`, "6h"})).
		WithRow(row("Variants and rollouts")).
		WithPanel(graph("Requests by variant", "Requests each variant of a model's traffic policy or rollout (stable, canary, ...) got, gRPC and REST together. A model whose own name holds '_' may show its whole pool here too.", "reqps", 12,
			q{`sum by (model, variant) (` + byVariant(`rate(envoy_cluster_upstream_rq_total{`+variantPools+`}[$__rate_interval])`) + `)`, "{{model}} {{variant}}"})).
		WithPanel(graph("Errors by variant", "Upstream 5xx per variant (REST answers and Envoy's own failures; gRPC errors travel with HTTP 200), and the workers' server-side failures per version (gRPC included).", "reqps", 12,
			q{`sum by (model, variant) (` + byVariant(`rate(envoy_cluster_upstream_rq_xx{`+variantPools+`, envoy_response_code_class="5"}[$__rate_interval])`) + `)`, "{{model}} {{variant}} 5xx"},
			q{`sum by (model, version) (rate(nv_inference_request_failure{model=~"$model", reason=~"BACKEND|REJECTED"}[$__rate_interval]))`, "{{model}} v{{version}} failures"})).
		WithPanel(graph("Latency by variant", "Upstream request time per variant, p50 and p99 (worker time plus the network).", "ms", 12,
			q{`histogram_quantile(0.5, sum by (le, model, variant) (` + byVariant(`rate(envoy_cluster_upstream_rq_time_bucket{`+variantPools+`}[$__rate_interval])`) + `))`, "{{model}} {{variant}} p50"},
			q{`histogram_quantile(0.99, sum by (le, model, variant) (` + byVariant(`rate(envoy_cluster_upstream_rq_time_bucket{`+variantPools+`}[$__rate_interval])`) + `))`, "{{model}} {{variant}} p99"})).
		WithPanel(graph("Rollouts: canary share and evaluations", "The canary's percent of each rolling-out model's requests (helix-xds's controller), and its SLO evaluations by result: pass, fail (rolled back; alert HelixRolloutRolledBack), no_data and prometheus_error (holding).", "short", 12,
			q{`max by (model) (helix_rollout_canary_percent{model=~"$model"})`, "{{model}} canary %"},
			q{`sum by (model, result) (increase(helix_rollout_evaluations_total{model=~"$model"}[$__rate_interval]))`, "{{model}} {{result}}"})).
		WithRow(row("Clients and models")).
		WithPanel(graph("Inference requests allowed, by client and model", "helix-authz's business counter: inference calls let through, per client and model (label values beyond its limits show as _other).", "reqps", 12,
			q{`topk(10, sum by (client, model) (rate(helix_authz_client_requests_total{kind="infer", result="ok"}[$__rate_interval])))`, "{{client}} {{model}}"})).
		WithPanel(graph("Denied, by client and model", "Requests helix-authz denied (credential, scope, model); client _none: no valid credential.", "reqps", 12,
			q{`topk(10, sum by (client, model) (rate(helix_authz_client_requests_total{result="denied"}[$__rate_interval])))`, "{{client}} {{model}}"})).
		WithRow(row("Rate limits")).
		WithPanel(graph("Over the limit, by client and model", "Requests refused with 429 / RESOURCE_EXHAUSTED because their client's plan was used up, the ten largest.", "reqps", 12,
			q{`topk(10, sum by (client, model) (rate(helix_authz_client_requests_total{result="rate_limited"}[$__rate_interval])))`, "{{client}} {{model}}"})).
		WithPanel(graph("Rate-limit decisions by result", "helix-authz's decisions inside Check: allowed, over_limit (refused with 429 / RESOURCE_EXHAUSTED) and error: Redis failed or did not answer within ratelimit.timeout, and ratelimit.failure_mode decided (alert: HelixRateLimitBackendErrors).", "reqps", 12,
			q{`sum by (result) (rate(helix_authz_ratelimit_decisions_total[$__rate_interval]))`, "{{result}}"})).
		WithPanel(graph("Redis round trip", "One Redis round trip of helix-authz's limiter (both windows), which every inference waits for: p50 and p99 (alert: HelixRateLimitRedisSlow, p99 above 50 ms).", "s", 12,
			q{`histogram_quantile(0.5, sum by (le) (rate(helix_authz_ratelimit_redis_seconds_bucket[$__rate_interval])))`, "p50"},
			q{`histogram_quantile(0.99, sum by (le) (rate(helix_authz_ratelimit_redis_seconds_bucket[$__rate_interval])))`, "p99"}))
}

func inferenceDashboard() *dashboard.DashboardBuilder {
	sel := `model=~"$model"`
	return newDashboard("helix-inference", "HelixFlow / Inference",
		"helix-worker, with Triton's metric names: throughput, queue versus compute time, batch sizes and failures per model.").
		WithVariable(queryVar("model", "Model", `label_values(nv_inference_request_success, model)`)).
		WithRow(row("Overview")).
		WithPanel(single("Inferences", "Inferences per second (a batch of n counts n).", "ops", 0,
			q{`sum(rate(nv_inference_count{` + sel + `}[$__rate_interval]))`, ""})).
		WithPanel(single("Pending requests", "Requests waiting in the models' queues now.", "short", 100,
			q{`sum(nv_inference_pending_request_count{` + sel + `})`, ""})).
		WithPanel(single("Workers up", "helix-workers Prometheus can scrape.", "short", 0,
			q{`sum(up{job="helix-worker"})`, ""})).
		WithPanel(single("Workers registered", "Workers holding a lease in helix-xds.", "short", 0,
			q{`max(helix_xds_registry_workers)`, ""})).
		WithRow(row("Throughput")).
		WithPanel(graph("Inferences per second", "By model (Triton's nv_inference_count).", "ops", 12,
			q{`sum by (model) (rate(nv_inference_count{` + sel + `}[$__rate_interval]))`, "{{model}}"})).
		WithPanel(graph("Requests by outcome", "Successful requests and failures by reason: REJECTED (queue full, timeout, unloading), BACKEND, CANCELED, OTHER.", "reqps", 12,
			q{`sum by (model) (rate(nv_inference_request_success{` + sel + `}[$__rate_interval]))`, "{{model}} success"},
			q{`sum by (model, reason) (rate(nv_inference_request_failure{` + sel + `}[$__rate_interval]))`, "{{model}} {{reason}}"})).
		WithRow(row("Queue and compute")).
		WithPanel(graph("Queue vs compute time per request", "Average per successful request, from Triton's cumulative counters: time queued, and time computing (input, infer, output).", "µs", 12,
			q{`sum by (model) (rate(nv_inference_queue_duration_us{` + sel + `}[$__rate_interval])) / sum by (model) (rate(nv_inference_request_success{` + sel + `}[$__rate_interval]))`, "{{model}} queue"},
			q{`(sum by (model) (rate(nv_inference_compute_input_duration_us{` + sel + `}[$__rate_interval])) + sum by (model) (rate(nv_inference_compute_infer_duration_us{` + sel + `}[$__rate_interval])) + sum by (model) (rate(nv_inference_compute_output_duration_us{` + sel + `}[$__rate_interval]))) / sum by (model) (rate(nv_inference_request_success{` + sel + `}[$__rate_interval]))`, "{{model}} compute"})).
		WithPanel(latency("p99 queue and compute time", "From helix-worker's histograms: p99 time in the queue, and of one model execution.", "s", 12,
			q{`histogram_quantile(0.99, sum by (le, model) (rate(helix_inference_queue_duration_seconds_bucket{` + sel + `}[$__rate_interval])))`, "{{model}} queue"},
			q{`histogram_quantile(0.99, sum by (le, model) (rate(helix_inference_compute_duration_seconds_bucket{` + sel + `}[$__rate_interval])))`, "{{model}} compute"})).
		WithPanel(latency("Request latency in the worker", "End-to-end time inside helix-worker, p50 and p99.", "s", 12,
			q{`histogram_quantile(0.5, sum by (le, model) (rate(helix_inference_request_duration_seconds_bucket{` + sel + `}[$__rate_interval])))`, "{{model}} p50"},
			q{`histogram_quantile(0.99, sum by (le, model) (rate(helix_inference_request_duration_seconds_bucket{` + sel + `}[$__rate_interval])))`, "{{model}} p99"})).
		WithPanel(graph("Share of time queued", "Above 50% for 10 minutes raises HelixQueueSaturation.", "percentunit", 12,
			q{`model:helix_inference_queue_time:ratio_rate5m{` + sel + `}`, "{{model}}"})).
		WithPanel(graph("Pending requests", "Requests in each model's queue.", "short", 12,
			q{`sum by (model) (nv_inference_pending_request_count{` + sel + `})`, "{{model}}"})).
		WithRow(row("Batching")).
		WithPanel(graph("Batch size", "Average inferences per execution (Triton's counters) and p90 of helix-worker's batch size histogram.", "short", 12,
			q{`sum by (model) (rate(nv_inference_count{` + sel + `}[$__rate_interval])) / sum by (model) (rate(nv_inference_exec_count{` + sel + `}[$__rate_interval]))`, "{{model}} average"},
			q{`histogram_quantile(0.9, sum by (le, model) (rate(helix_inference_batch_size_bucket{` + sel + `}[$__rate_interval])))`, "{{model}} p90"})).
		WithPanel(graph("Executions per second", "Model executions (a batch counts once).", "ops", 12,
			q{`sum by (model) (rate(nv_inference_exec_count{` + sel + `}[$__rate_interval]))`, "{{model}}"})).
		WithRow(row("Availability")).
		WithPanel(graph("Server-side failure ratio", "BACKEND and REJECTED failures over all requests (alert: HelixInferenceErrorRatio above 5%).", "percentunit", 12,
			q{`model:helix_inference_failures:ratio_rate5m{` + sel + `}`, "{{model}}"})).
		WithPanel(graph("Healthy workers per model", "Envoy's healthy endpoints for the model, the fewer of its gRPC and REST pools (alert: HelixModelUnavailable).", "short", 12,
			q{`model:envoy_healthy_endpoints:min{` + sel + `}`, "{{model}}"}))
}

func gpuDashboard() *dashboard.DashboardBuilder {
	sel := `Hostname=~"$Hostname"`
	dcgm := func(name string) string { return name + `{` + sel + `}` }
	return newDashboard("helix-gpu", "HelixFlow / GPUs",
		"Per-GPU telemetry from helix-worker, in dcgm-exporter's names (so NVIDIA's dashboards work too) and Triton's nv_gpu_*.").
		WithVariable(queryVar("Hostname", "Host", `label_values(DCGM_FI_DEV_GPU_UTIL, Hostname)`)).
		WithRow(row("Overview")).
		WithPanel(single("GPUs", "GPUs NVML reports on the workers (0 without an NVIDIA driver).", "short", 0,
			q{`sum(helix_gpu_count)`, ""})).
		WithPanel(single("Average utilisation", "Mean GPU utilisation.", "percent", 95,
			q{`avg(` + dcgm("DCGM_FI_DEV_GPU_UTIL") + `)`, ""})).
		WithPanel(single("Hottest GPU", "Highest GPU temperature (alert: HelixGPUTemperatureHigh above 85 °C).", "celsius", 85,
			q{`max(` + dcgm("DCGM_FI_DEV_GPU_TEMP") + `)`, ""})).
		WithPanel(single("Xid errors (24h)", "Xid errors NVML reported in the last day.", "short", 1,
			q{`sum(increase(helix_gpu_xid_errors_total{` + sel + `}[24h]))`, ""})).
		WithRow(row("Load")).
		WithPanel(graph("GPU utilisation", "DCGM_FI_DEV_GPU_UTIL per GPU.", "percent", 12,
			q{dcgm("DCGM_FI_DEV_GPU_UTIL"), "{{Hostname}} GPU {{gpu}}"})).
		WithPanel(graph("Framebuffer memory used", "Used over used plus free (alert: HelixGPUMemoryHigh above 90%).", "percentunit", 12,
			q{dcgm("DCGM_FI_DEV_FB_USED") + ` / (` + dcgm("DCGM_FI_DEV_FB_USED") + ` + ` + dcgm("DCGM_FI_DEV_FB_FREE") + `)`, "{{Hostname}} GPU {{gpu}}"})).
		WithPanel(graph("Memory (Triton's names)", "nv_gpu_memory_used_bytes and nv_gpu_memory_total_bytes per GPU.", "bytes", 12,
			q{`nv_gpu_memory_used_bytes`, "used {{gpu_uuid}}"},
			q{`nv_gpu_memory_total_bytes`, "total {{gpu_uuid}}"})).
		WithPanel(graph("Utilisation (Triton's names)", "nv_gpu_utilization per GPU.", "percentunit", 12,
			q{`nv_gpu_utilization`, "{{gpu_uuid}}"})).
		WithRow(row("Power and heat")).
		WithPanel(graph("Power", "Power draw per GPU, with Triton's power limit.", "watt", 12,
			q{dcgm("DCGM_FI_DEV_POWER_USAGE"), "{{Hostname}} GPU {{gpu}}"},
			q{`nv_gpu_power_limit`, "limit {{gpu_uuid}}"})).
		WithPanel(graph("Energy", "Average power from Triton's energy counter (joules per second).", "watt", 12,
			q{`rate(nv_energy_consumption[$__rate_interval])`, "{{gpu_uuid}}"})).
		WithPanel(graph("Temperature", "GPU and memory temperature.", "celsius", 12,
			q{dcgm("DCGM_FI_DEV_GPU_TEMP"), "{{Hostname}} GPU {{gpu}}"},
			q{dcgm("DCGM_FI_DEV_MEMORY_TEMP"), "{{Hostname}} GPU {{gpu}} memory"})).
		WithPanel(graph("Clocks", "SM and memory clocks.", "rotmhz", 12,
			q{dcgm("DCGM_FI_DEV_SM_CLOCK"), "{{Hostname}} GPU {{gpu}} SM"},
			q{dcgm("DCGM_FI_DEV_MEM_CLOCK"), "{{Hostname}} GPU {{gpu}} memory"})).
		WithRow(row("PCIe and errors")).
		WithPanel(graph("PCIe throughput", "Bytes per second over PCIe (the counters are in KB).", "Bps", 12,
			q{`rate(` + dcgm("DCGM_FI_DEV_PCIE_TX_THROUGHPUT") + `[$__rate_interval]) * 1024`, "{{Hostname}} GPU {{gpu}} TX"},
			q{`rate(` + dcgm("DCGM_FI_DEV_PCIE_RX_THROUGHPUT") + `[$__rate_interval]) * 1024`, "{{Hostname}} GPU {{gpu}} RX"})).
		WithPanel(graph("Xid errors", "Xid errors per GPU and Xid (alert: HelixGPUXidError), and the last Xid dcgm-exporter style.", "short", 12,
			q{`sum by (Hostname, gpu, xid) (increase(helix_gpu_xid_errors_total{` + sel + `}[$__rate_interval]))`, "{{Hostname}} GPU {{gpu}} Xid {{xid}}"},
			q{dcgm("DCGM_FI_DEV_XID_ERRORS") + ` > 0`, "{{Hostname}} GPU {{gpu}} last Xid"})).
		WithPanel(graph("GPUs answering", "1 while a GPU answers NVML in time.", "short", 24,
			q{`helix_gpu_up{` + sel + `}`, "{{Hostname}} GPU {{gpu}}"}))
}

func authDashboard() *dashboard.DashboardBuilder {
	return newDashboard("helix-auth", "HelixFlow / Auth",
		"helix-authz: tokens issued, Envoy's authorization checks by result and reason, latency, and the signing key's age.").
		WithRow(row("Overview")).
		WithPanel(single("Tokens issued", "Access tokens issued per second.", "reqps", 0,
			q{`sum(rate(helix_authz_tokens_issued_total{result="issued"}[$__rate_interval]))`, ""})).
		WithPanel(single("Checks", "Authorization checks per second.", "reqps", 0,
			q{`sum(rate(helix_authz_checks_total[$__rate_interval]))`, ""})).
		WithPanel(single("Checks failing", "Checks helix-authz could not decide (alert: HelixAuthzErrorSpike above 5%).", "percentunit", 0.05,
			q{`helix:authz_unavailable:ratio_rate5m`, ""})).
		WithPanel(single("Signing key age", "Age of the key that signs tokens now.", "s", 86400,
			q{`max(helix_authz_signing_key_age_seconds)`, ""})).
		WithRow(row("Tokens")).
		WithPanel(graph("Token requests by result", "issued, or the OAuth2 error returned.", "reqps", 12,
			q{`sum by (result) (rate(helix_authz_tokens_issued_total[$__rate_interval]))`, "{{result}}"})).
		WithPanel(graph("Token endpoint latency", "Time to answer a token request.", "s", 12,
			quantiles("helix_authz_token_duration_seconds_bucket", "", "le", "")...)).
		WithRow(row("Checks")).
		WithPanel(graph("Checks by result", "ok, denied, unavailable.", "reqps", 12,
			q{`sum by (result) (rate(helix_authz_checks_total[$__rate_interval]))`, "{{result}}"})).
		WithPanel(graph("Denials by reason", "Why checks were not ok; result rate_limited: over the plan's limit; reason ratelimit_unavailable: Redis's counters unavailable with ratelimit.failure_mode closed.", "reqps", 12,
			q{`sum by (result, reason) (rate(helix_authz_checks_total{result!="ok"}[$__rate_interval]))`, "{{result}} {{reason}}"})).
		WithPanel(latency("Check latency", "Time to answer Envoy's check.", "s", 12,
			quantiles("helix_authz_check_duration_seconds_bucket", "", "le", "")...)).
		WithPanel(graph("Envoy's ext_authz", "Checks as Envoy saw them; error: no answer from helix-authz (the request is denied).", "reqps", 12,
			q{`sum(rate(envoy_http_ext_authz_ok{` + gatewayHCM + `}[$__rate_interval]))`, "ok"},
			q{`sum(rate(envoy_http_ext_authz_denied{` + gatewayHCM + `}[$__rate_interval]))`, "denied"},
			q{`sum(rate(envoy_http_ext_authz_error{` + gatewayHCM + `}[$__rate_interval]))`, "error"})).
		WithPanel(graph("Denied, by client and model", "The ten largest; client _none: no valid credential.", "reqps", 12,
			q{`topk(10, sum by (client, model, kind) (rate(helix_authz_client_requests_total{result="denied"}[$__rate_interval])))`, "{{client}} {{model}} {{kind}}"})).
		WithPanel(graph("Signing key", "Age of the signing key against the rotation period (alert: HelixSigningKeyPastRotation).", "s", 12,
			q{`helix_authz_signing_key_age_seconds`, "age {{instance}}"},
			q{`helix_authz_signing_key_rotation_period_seconds`, "rotation period {{instance}}"}))
}

func controlPlaneDashboard() *dashboard.DashboardBuilder {
	return newDashboard("helix-control-plane", "HelixFlow / Control plane",
		"helix-xds: config versions pushed to Envoy, acknowledgements and rejections, the worker registry.").
		WithRow(row("Overview")).
		WithPanel(single("Connected Envoys", "Open ADS streams.", "short", 0,
			q{`sum(helix_xds_connected_envoys)`, ""})).
		WithPanel(single("Registered workers", "Workers holding a lease.", "short", 0,
			q{`max(helix_xds_registry_workers)`, ""})).
		WithPanel(single("Routable endpoints", "Ready (worker, model) pairs.", "short", 0,
			q{`max(helix_xds_registry_endpoints)`, ""})).
		WithPanel(single("NACKs (1h)", "Configs Envoy rejected in the last hour (alert: HelixXDSNack).", "short", 1,
			q{`sum(increase(helix_xds_nacks_total[1h]))`, ""})).
		WithRow(row("Pushes")).
		WithPanel(graph("Config versions", "Versions published per cache since helix-xds started.", "short", 12,
			q{`max by (cache) (helix_xds_snapshot_generation)`, "{{cache}}"})).
		WithPanel(graph("Publishes", "New snapshot versions per second, and publishes refused.", "ops", 12,
			q{`sum by (cache) (rate(helix_xds_publishes_total[$__rate_interval]))`, "{{cache}}"},
			q{`sum(rate(helix_xds_publish_errors_total[$__rate_interval]))`, "refused"})).
		WithPanel(graph("Push latency", "From a version being set to an Envoy acknowledging it, by resource type.", "s", 12,
			q{`histogram_quantile(0.5, sum by (le, type) (rate(helix_xds_push_latency_seconds_bucket[$__rate_interval])))`, "{{type}} p50"},
			q{`histogram_quantile(0.99, sum by (le, type) (rate(helix_xds_push_latency_seconds_bucket[$__rate_interval])))`, "{{type}} p99"})).
		WithPanel(graph("NACKs by type", "Configs Envoy rejected (helix-xds), and Envoy's own rejection counters.", "short", 12,
			q{`sum by (type) (increase(helix_xds_nacks_total[$__rate_interval]))`, "{{type}}"},
			q{`sum(increase(envoy_cluster_manager_cds_update_rejected[$__rate_interval]))`, "Envoy CDS"},
			q{`sum(increase(envoy_listener_manager_lds_update_rejected[$__rate_interval]))`, "Envoy LDS"})).
		WithPanel(graph("Rebuilds", "Rebuilds of the Envoy resources by result, and their p99 time with the publish's.", "s", 12,
			q{`histogram_quantile(0.99, sum by (le) (rate(helix_xds_rebuild_duration_seconds_bucket[$__rate_interval])))`, "rebuild p99"},
			q{`histogram_quantile(0.99, sum by (le) (rate(helix_xds_publish_duration_seconds_bucket[$__rate_interval])))`, "publish p99"})).
		WithPanel(graph("Rebuild results", "Rebuilds per second by result.", "ops", 12,
			q{`sum by (result) (rate(helix_xds_rebuilds_total[$__rate_interval]))`, "{{result}}"})).
		WithRow(row("Registry and Envoy")).
		WithPanel(graph("Registry", "Workers with a lease, routable endpoints, and leases that lapsed.", "short", 12,
			q{`max(helix_xds_registry_workers)`, "workers"},
			q{`max(helix_xds_registry_endpoints)`, "endpoints"},
			q{`sum(increase(helix_xds_registry_lease_expirations_total[$__rate_interval]))`, "leases lapsed"})).
		WithPanel(graph("Resources in the snapshot", "By type.", "short", 12,
			q{`max by (type) (helix_xds_snapshot_resources)`, "{{type}}"})).
		WithPanel(graph("Envoy's connection to helix-xds", "1 while each Envoy's ADS stream is up.", "short", 12,
			q{`envoy_control_plane_connected_state`, "{{instance}}"}))
}
