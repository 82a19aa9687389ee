output "gateway_url" {
  description = "The gateway (gRPC and REST over TLS): tritonclient, perf_analyzer and curl use it with a token."
  value       = "https://${var.gateway_host}"
}

output "token_url" {
  description = "The OAuth2 token endpoint (client credentials)."
  value       = "${local.issuer}/oauth2/token"
}

output "gateway_address" {
  description = "External address of the gateway's load balancer: point gateway_host at it (CNAME for a host name, A record for an IP)."
  value       = try(coalesce(data.kubernetes_service_v1.gateway.status[0].load_balancer[0].ingress[0].hostname, data.kubernetes_service_v1.gateway.status[0].load_balancer[0].ingress[0].ip), "pending")
}

output "token_server_address" {
  description = "External address of the token server's load balancer: point auth_host at it."
  value       = try(coalesce(data.kubernetes_service_v1.oauth.status[0].load_balancer[0].ingress[0].hostname, data.kubernetes_service_v1.oauth.status[0].load_balancer[0].ingress[0].ip), "pending")
}

output "dashboards" {
  description = "How to open the Grafana dashboards (folder HelixFlow) and Alertmanager."
  value = var.install_monitoring ? {
    grafana      = "kubectl -n monitoring port-forward service/kube-prometheus-stack-grafana 3000:80, then http://127.0.0.1:3000/dashboards"
    alertmanager = "kubectl -n monitoring port-forward service/kube-prometheus-stack-alertmanager 9093:9093"
    prometheus   = "kubectl -n monitoring port-forward service/kube-prometheus-stack-prometheus 9090:9090"
    } : {
    grafana      = "monitoring not installed (install_monitoring = false): load the ConfigMaps of grafana/ into your Grafana"
    alertmanager = ""
    prometheus   = ""
  }
}

output "admin_token" {
  description = "helix-authz's admin API token (helixctl HELIX_ADMIN_TOKEN), through kubectl port-forward service/helixflow-authz 8091."
  value       = random_password.admin_token.result
  sensitive   = true
}

output "namespace" {
  description = "Namespace of the release."
  value       = kubernetes_namespace_v1.this.metadata[0].name
}
