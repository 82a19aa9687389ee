{{- /* Generated from internal/identity; do not edit. Regenerate: go test ./internal/identity -run TestHelmTemplate -update */ -}}
{{- define "helixflow.identity.envoy" -}}spiffe://helixflow.local/envoy{{- end }}
{{- define "helixflow.identity.ratelimit" -}}spiffe://helixflow.local/helix-ratelimit{{- end }}
{{- define "helixflow.identity.ratelimitCallers" -}}spiffe://helixflow.local/envoy{{- end }}
