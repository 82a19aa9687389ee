{{- /*
helixflow.validate: cross-field checks that values.schema.json cannot
express, included first by every template so that these messages, which
name the value, win over any later failure. Renders nothing.
*/ -}}
{{- define "helixflow.validate" -}}
{{- $v := .Values -}}
{{- if not $v.images.registry -}}
{{- range $k := list "worker" "authz" "xds" "helixctl" -}}
{{- if not (index $v.images $k | default dict).repository -}}
{{- fail (printf "images.registry: required (the registry that `make images REGISTRY=...` pushed to), or images.%s.repository" $k) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $v.gateway.hosts -}}
{{- fail "gateway.hosts: required (the public DNS names clients use for the gateway)" -}}
{{- end -}}
{{- $_ := include "helixflow.issuerHost" . -}}
{{- if and $v.gateway.publicSurface.enabled (not $v.authz.oauthRateLimit.trustedProxies) -}}
{{- fail "authz.oauthRateLimit.trustedProxies: required with gateway.publicSurface.enabled (the gateway pods' CIDR): helix-authz must believe Envoy's X-Forwarded-For, or every person reaching the portal, /api/v1 and /oauth2 through the gateway counts as one of Envoy's pods in its throttles and limits" -}}
{{- end -}}
{{- if $v.tracing.enabled -}}
{{- if not (regexMatch "^[^:\\s/]+:[0-9]+$" $v.tracing.endpoint) -}}
{{- fail (printf "tracing.endpoint: %q is not host:port (the OpenTelemetry Collector's OTLP/gRPC receiver, e.g. otel-collector.observability.svc:4317)" $v.tracing.endpoint) -}}
{{- end -}}
{{- if and $v.tracing.caSecret.name (not $v.tracing.caSecret.key) -}}
{{- fail "tracing.caSecret.key: required with tracing.caSecret.name" -}}
{{- end -}}
{{- if and $v.networkPolicy.enabled (not $v.networkPolicy.otlpCollector.cidrs) (not $v.networkPolicy.otlpCollector.namespaceSelector) -}}
{{- fail "networkPolicy.otlpCollector: cidrs or namespaceSelector required with tracing.enabled while networkPolicy.enabled (where the collector runs: the pods may reach nothing else)" -}}
{{- end -}}
{{- end -}}
{{- include "helixflow.requireSecret" (list $v.authz.secrets.database "authz.secrets.database") -}}
{{- include "helixflow.requireSecret" (list $v.authz.secrets.kek "authz.secrets.kek") -}}
{{- include "helixflow.requireSecret" (list $v.authz.secrets.pepper "authz.secrets.pepper") -}}
{{- with $v.authz.mail.smtpAddress -}}
{{- if not (regexMatch "^[^:\\s]+:[0-9]+$" .) -}}
{{- fail (printf "authz.mail.smtpAddress: %q is not host:port" .) -}}
{{- end -}}
{{- if not $v.authz.mail.from -}}
{{- fail "authz.mail.from: required with authz.mail.smtpAddress (the mails' sender address)" -}}
{{- end -}}
{{- if and $v.authz.secrets.smtpPassword.name (not $v.authz.mail.smtpUsername) -}}
{{- fail "authz.secrets.smtpPassword: a password without authz.mail.smtpUsername" -}}
{{- end -}}
{{- end -}}
{{- if $v.ratelimit.enabled -}}
{{- /* helix-authz counts requests in Redis (--redis-address, --redis-password-file). */ -}}
{{- if and (eq $v.redis.mode "external") (not $v.redis.external.address) -}}
{{- fail "redis.external.address: required with redis.mode external (host:port of the Redis helix-authz keeps the rate-limit counters in)" -}}
{{- end -}}
{{- include "helixflow.requireSecret" (list $v.redis.auth "redis.auth") -}}
{{- if not $v.ratelimit.defaultPlan -}}
{{- fail (printf "ratelimit.defaultPlan: required: the plan of clients with none or one not listed (one of gateway.config.plans: %s)" (keys ($v.gateway.config.plans | default dict) | sortAlpha | join ", ")) -}}
{{- end -}}
{{- if not (hasKey ($v.gateway.config.plans | default dict) $v.ratelimit.defaultPlan) -}}
{{- fail (printf "ratelimit.defaultPlan: %q is not a plan in gateway.config.plans" $v.ratelimit.defaultPlan) -}}
{{- end -}}
{{- end -}}
{{- if not $v.workers.pools -}}
{{- fail "workers.pools: at least one worker pool is required" -}}
{{- end -}}
{{- $names := dict -}}
{{- range $i, $p := $v.workers.pools -}}
{{- if hasKey $names $p.name -}}
{{- fail (printf "workers.pools[%d].name: %q is used by another pool" $i $p.name) -}}
{{- end -}}
{{- $_ := set $names $p.name true -}}
{{- if and (gt (int ($p.gpus | default 0)) 0) (not $v.gpu.enabled) -}}
{{- fail (printf "workers.pools[%d].gpus: pool %q asks for %v GPUs but gpu.enabled is false (the cluster has no GPU node pool configured)" $i $p.name $p.gpus) -}}
{{- end -}}
{{- $repo := $p.modelRepository | default dict -}}
{{- if eq (len (keys $repo)) 0 -}}
{{- fail (printf "workers.pools[%d].modelRepository: required (persistentVolumeClaim or image)" $i) -}}
{{- end -}}
{{- end -}}
{{- if $v.networkPolicy.enabled -}}
{{- if not $v.networkPolicy.postgres.cidrs -}}
{{- fail "networkPolicy.postgres.cidrs: required while networkPolicy.enabled (the CIDRs of the Postgres server helix-authz uses)" -}}
{{- end -}}
{{- if and $v.ratelimit.enabled (eq $v.redis.mode "external") (not $v.networkPolicy.externalRedis.cidrs) -}}
{{- fail "networkPolicy.externalRedis.cidrs: required with redis.mode external while networkPolicy.enabled" -}}
{{- end -}}
{{- if and $v.authz.mail.smtpAddress (not $v.networkPolicy.smtp.cidrs) -}}
{{- fail "networkPolicy.smtp.cidrs: required with authz.mail.smtpAddress while networkPolicy.enabled (the CIDRs of the SMTP server helix-authz mails through)" -}}
{{- end -}}
{{- end -}}
{{- if and $v.tls.certManager.enabled (not $v.tls.certManager.createIssuer) (not $v.tls.certManager.issuerRef.name) -}}
{{- fail "tls.certManager.issuerRef.name: required when tls.certManager.createIssuer is false" -}}
{{- end -}}
{{- end -}}
