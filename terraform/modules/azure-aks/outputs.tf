# The same outputs as aws-eks and gcp-gke: the helixflow module takes
# them as they are (see terraform/envs/*/main.tf).

output "cluster_name" {
  description = "AKS cluster name."
  value       = azurerm_kubernetes_cluster.this.name
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint."
  value       = azurerm_kubernetes_cluster.this.kube_config[0].host
  sensitive   = true
}

output "cluster_ca_certificate" {
  description = "PEM CA certificate of the Kubernetes API."
  value       = base64decode(azurerm_kubernetes_cluster.this.kube_config[0].cluster_ca_certificate)
  sensitive   = true
}

output "kubeconfig_command" {
  description = "Commands that write a kubeconfig entry for the cluster (Entra ID login through kubelogin)."
  value       = "az aks get-credentials --resource-group ${azurerm_resource_group.this.name} --name ${azurerm_kubernetes_cluster.this.name} && kubelogin convert-kubeconfig -l azurecli"
}

output "workload_identity" {
  description = "Workload Identity: the cluster's OIDC issuer that federated credentials trust."
  value       = { oidc_issuer_url = azurerm_kubernetes_cluster.this.oidc_issuer_url }
}

output "gpu_enabled" {
  description = "Whether the cluster has a GPU node pool."
  value       = var.gpu_enabled
}

output "gpu_node_selector" {
  description = "Node labels of the GPU nodes."
  value       = { "helixflow.io/pool" = "gpu" }
}

output "install_nvidia_device_plugin" {
  description = "Whether the NVIDIA device plugin must be installed (AKS: yes, AKS installs the driver only)."
  value       = var.gpu_enabled
}

output "postgres" {
  description = "helix-authz's Postgres: host, port, database, user, password, sslmode, CA bundle (empty: the system roots) and the CIDRs it is reached at."
  sensitive   = true
  value = {
    host     = azurerm_postgresql_flexible_server.this.fqdn
    port     = 5432
    database = azurerm_postgresql_flexible_server_database.this.name
    username = azurerm_postgresql_flexible_server.this.administrator_login
    password = random_password.postgres.result
    sslmode  = "verify-full"
    ca_pem   = ""
    cidrs    = [local.postgres_cidr]
  }
}

output "redis" {
  description = "The rate-limit counters' Redis: address (host:port), TLS, password, CA bundle (empty: the system roots) and CIDRs."
  sensitive   = true
  value = {
    address  = "${azurerm_redis_cache.this.hostname}:${azurerm_redis_cache.this.ssl_port}"
    tls      = true
    password = azurerm_redis_cache.this.primary_access_key
    ca_pem   = ""
    cidrs    = [local.endpoint_cidr]
  }
}

output "load_balancer_annotations" {
  description = "Annotations of the gateway's and token server's LoadBalancer Services (AKS: none needed for a public Standard Load Balancer)."
  value       = {}
}
