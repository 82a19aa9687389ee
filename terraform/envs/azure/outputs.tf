output "gateway_url" {
  description = "The gateway, for gRPC and REST clients."
  value       = module.helixflow.gateway_url
}

output "token_url" {
  description = "The OAuth2 token endpoint."
  value       = module.helixflow.token_url
}

output "dashboards" {
  description = "How to open Grafana, Alertmanager and Prometheus."
  value       = module.helixflow.dashboards
}

output "gateway_address" {
  description = "Point gateway_host at this address."
  value       = module.helixflow.gateway_address
}

output "token_server_address" {
  description = "Point auth_host at this address."
  value       = module.helixflow.token_server_address
}

output "kubeconfig_command" {
  description = "Writes a kubeconfig entry for the cluster."
  value       = module.cluster.kubeconfig_command
}

output "workload_identity" {
  description = "The cluster's workload identity settings."
  value       = module.cluster.workload_identity
}
