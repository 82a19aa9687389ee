{{- /* Generated from internal/identity; do not edit. Regenerate: go test ./internal/identity -run TestHelmTemplate -update */ -}}
{{- define "helixflow.identity.envoy" -}}spiffe://helixflow.local/envoy{{- end }}
{{- define "helixflow.identity.authz" -}}spiffe://helixflow.local/helix-authz{{- end }}
{{- define "helixflow.identity.worker" -}}spiffe://helixflow.local/worker/{{ . }}{{- end }}
