{{/* Names. */}}
{{- define "helixflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "helixflow.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "helixflow.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "helixflow.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* helixflow.component: "<fullname>-<component>"; call with (list $ "xds"). */}}
{{- define "helixflow.component" -}}
{{- printf "%s-%s" (include "helixflow.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{/* Labels on everything. */}}
{{- define "helixflow.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "helixflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: helixflow
{{- end -}}

{{/* Selector labels of a component; call with (list $ "xds"). */}}
{{- define "helixflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "helixflow.name" (index . 0) }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/*
helixflow.image: the reference of one image; call with (list $ "xds" "helix-xds").
HelixFlow's images default to <images.registry>/<name>:<images.tag or appVersion>.
*/}}
{{- define "helixflow.image" -}}
{{- $root := index . 0 -}}
{{- $key := index . 1 -}}
{{- $name := index . 2 -}}
{{- $img := index $root.Values.images $key | default dict -}}
{{- $repo := $img.repository -}}
{{- if not $repo -}}
{{- if not $root.Values.images.registry -}}
{{- fail (printf "images.registry: required (the registry that `make images REGISTRY=...` pushed to), or images.%s.repository" $key) -}}
{{- end -}}
{{- $repo = printf "%s/%s" (trimSuffix "/" $root.Values.images.registry) $name -}}
{{- end -}}
{{- $tag := $img.tag | default $root.Values.images.tag | default $root.Chart.AppVersion -}}
{{- if eq (toString $tag) "latest" -}}
{{- fail (printf "images.%s.tag: \"latest\" is refused; pin a version or a digest" $key) -}}
{{- end -}}
{{- if $img.digest -}}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" $img.digest) -}}
{{- fail (printf "images.%s.digest: %q is not sha256:<64 hex digits>" $key $img.digest) -}}
{{- end -}}
{{- printf "%s:%s@%s" $repo $tag $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}
{{- end -}}

{{/* Pod-level security: non-root, RuntimeDefault seccomp. */}}
{{- define "helixflow.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ . | default 65532 }}
runAsGroup: {{ . | default 65532 }}
fsGroup: {{ . | default 65532 }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security: read-only root, no privileges, no capabilities. */}}
{{- define "helixflow.containerSecurityContext" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "helixflow.imagePullSecrets" -}}
{{- with .Values.images.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
helixflow.tlsSecret: the Secret holding a certificate; call with (list $ "xds").
With cert-manager it is the Certificate's secret; without, tls.secrets.<name>
must name an existing one.
*/}}
{{- define "helixflow.tlsSecret" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- if $root.Values.tls.certManager.enabled -}}
{{- printf "%s-tls" (include "helixflow.component" (list $root (kebabcase $name))) -}}
{{- else -}}
{{- $s := index $root.Values.tls.secrets $name -}}
{{- if not $s -}}
{{- fail (printf "tls.secrets.%s: required when tls.certManager.enabled is false (an existing Secret with tls.crt, tls.key and ca.crt)" $name) -}}
{{- end -}}
{{- $s -}}
{{- end -}}
{{- end -}}

{{/*
helixflow.workerUsageSecret: the Secret of a worker pool's client certificate
towards helix-authz's usage ledger; call with (list $ "cpu"). With
cert-manager it is the Certificate's secret; without, tls.secrets.workerUsage.<pool>.
*/}}
{{/* helixflow.workersReachAuthz: non-empty when workers call helix-authz's
gRPC listener (the usage ledger, usage.enabled; the per-message plan limits,
limits.enabled): their client certificate, its volume and the NetworkPolicy
path to port 9001 exist then. */}}
{{- define "helixflow.workersReachAuthz" -}}
{{- if or .Values.usage.enabled .Values.limits.enabled -}}true{{- end -}}
{{- end -}}

{{- define "helixflow.workerUsageSecret" -}}
{{- $root := index . 0 -}}
{{- $pool := index . 1 -}}
{{- if $root.Values.tls.certManager.enabled -}}
{{- printf "%s-tls" (include "helixflow.component" (list $root (printf "worker-%s-usage" $pool))) -}}
{{- else -}}
{{- $s := index ($root.Values.tls.secrets.workerUsage | default dict) $pool -}}
{{- if not $s -}}
{{- fail (printf "tls.secrets.workerUsage.%s: required when tls.certManager.enabled is false and usage.enabled or limits.enabled is true (an existing Secret with tls.crt, tls.key and ca.crt: the client certificate of pool %s, URI SAN spiffe://helixflow.local/worker/%s)" $pool $pool $pool) -}}
{{- end -}}
{{- $s -}}
{{- end -}}
{{- end -}}

{{/* helixflow.requireSecret: fail unless a secret reference has a name; call with (list $ref "authz.secrets.database"). */}}
{{- define "helixflow.requireSecret" -}}
{{- $ref := index . 0 -}}
{{- if not $ref.name -}}
{{- fail (printf "%s.name: required (an existing Secret; the chart never holds secret values)" (index . 1)) -}}
{{- end -}}
{{- if not $ref.key -}}
{{- fail (printf "%s.key: required" (index . 1)) -}}
{{- end -}}
{{- end -}}

{{/* Service DNS names. */}}
{{- define "helixflow.xdsHost" -}}
{{- printf "%s.%s.svc" (include "helixflow.component" (list . "xds")) .Release.Namespace -}}
{{- end -}}
{{- define "helixflow.authzHost" -}}
{{- printf "%s.%s.svc" (include "helixflow.component" (list . "authz")) .Release.Namespace -}}
{{- end -}}
{{- define "helixflow.redisHost" -}}
{{- printf "%s.%s.svc" (include "helixflow.component" (list . "redis")) .Release.Namespace -}}
{{- end -}}

{{/* The Redis helix-authz keeps its rate-limit counters in (helixflow.validate requires the external address). */}}
{{- define "helixflow.redisAddress" -}}
{{- if eq .Values.redis.mode "external" -}}
{{- .Values.redis.external.address -}}
{{- else -}}
{{- printf "%s:6379" (include "helixflow.redisHost" .) -}}
{{- end -}}
{{- end -}}

{{/* The host of authz.issuer (the OAuth2 endpoints' public name). */}}
{{- define "helixflow.issuerHost" -}}
{{- $u := urlParse (required "authz.issuer: required (https://<public host of the token server>)" .Values.authz.issuer) -}}
{{- if ne $u.scheme "https" -}}
{{- fail (printf "authz.issuer: %q must be an https URL" .Values.authz.issuer) -}}
{{- end -}}
{{- regexReplaceAll ":[0-9]+$" $u.host "" -}}
{{- end -}}

{{/* helix-authz's --public-url: authz.publicURL, else the gateway's origin when Envoy serves the public surface (gateway.publicSurface), else none (the issuer). */}}
{{- define "helixflow.publicURL" -}}
{{- if .Values.authz.publicURL -}}
{{- .Values.authz.publicURL -}}
{{- else if .Values.gateway.publicSurface.enabled -}}
{{- $port := int .Values.gateway.service.port -}}
{{- printf "https://%s%s" (first .Values.gateway.hosts) (eq $port 443 | ternary "" (printf ":%d" $port)) -}}
{{- end -}}
{{- end -}}

{{/* Paths where certificates are mounted. */}}
{{- define "helixflow.tlsDir" -}}/etc/helixflow/tls/{{ . }}{{- end -}}

{{/* A volume of a TLS secret; call with (list $ "xds" "volume-name"). */}}
{{- define "helixflow.tlsVolume" -}}
- name: {{ index . 2 }}
  secret:
    secretName: {{ include "helixflow.tlsSecret" (list (index . 0) (index . 1)) }}
    defaultMode: 0440
{{- end -}}

{{/* Probe timings shared by the services. */}}
{{- define "helixflow.probeTimings" -}}
periodSeconds: 10
timeoutSeconds: 3
{{- end -}}

{{/* Labels of a component's pods: its selector labels and the common ones; call with (list $ "xds"). */}}
{{- define "helixflow.podLabels" -}}
{{- $root := index . 0 -}}
{{ include "helixflow.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: helixflow
{{- end -}}

{{/*
Tracing (values tracing): the daemons' OpenTelemetry flags, and the volume
and mount of the collector's CA (tracing.caSecret). Empty while tracing is
off. The collector is reached over TLS: its certificate is checked against
tracing.caSecret, else the system's roots (the daemons allow plaintext only
to a loopback collector).
*/}}
{{- define "helixflow.otlpCAFile" -}}
{{- with .Values.tracing.caSecret -}}
{{- if .name -}}/etc/helixflow/otlp-ca/{{ .key }}{{- end -}}
{{- end -}}
{{- end -}}
{{- define "helixflow.otlpArgs" -}}
{{- if .Values.tracing.enabled -}}
- --otlp-endpoint={{ .Values.tracing.endpoint }}
{{- with include "helixflow.otlpCAFile" . }}
- --otlp-ca-file={{ . }}
{{- end }}
{{- end -}}
{{- end -}}
{{- define "helixflow.otlpVolumeMount" -}}
{{- if and .Values.tracing.enabled .Values.tracing.caSecret.name -}}
- name: otlp-ca
  mountPath: /etc/helixflow/otlp-ca
  readOnly: true
{{- end -}}
{{- end -}}
{{- define "helixflow.otlpVolume" -}}
{{- if and .Values.tracing.enabled .Values.tracing.caSecret.name -}}
- name: otlp-ca
  secret:
    secretName: {{ .Values.tracing.caSecret.name }}
    defaultMode: 0440
    items:
      - {key: {{ .Values.tracing.caSecret.key }}, path: {{ .Values.tracing.caSecret.key }}}
{{- end -}}
{{- end -}}
