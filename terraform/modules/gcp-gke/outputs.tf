# The same outputs as aws-eks and azure-aks: the helixflow module takes
# them as they are (see terraform/envs/*/main.tf).

output "cluster_name" {
  description = "GKE cluster name."
  value       = google_container_cluster.this.name
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint."
  value       = "https://${google_container_cluster.this.endpoint}"
}

output "cluster_ca_certificate" {
  description = "PEM CA certificate of the Kubernetes API."
  value       = base64decode(google_container_cluster.this.master_auth[0].cluster_ca_certificate)
}

output "kubeconfig_command" {
  description = "Command that writes a kubeconfig entry for the cluster."
  value       = "gcloud container clusters get-credentials ${google_container_cluster.this.name} --region ${var.region} --project ${var.project_id}"
}

output "workload_identity" {
  description = "Workload Identity: the pool that Kubernetes service accounts map into."
  value       = { workload_pool = "${var.project_id}.svc.id.goog" }
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
  description = "Whether the NVIDIA device plugin must be installed (GKE: no, GKE runs its own)."
  value       = false
}

output "postgres" {
  description = "helix-authz's Postgres: host, port, database, user, password, sslmode, CA bundle and the CIDRs it is reached at."
  sensitive   = true
  value = {
    host     = google_sql_database_instance.this.private_ip_address
    port     = 5432
    database = google_sql_database.this.name
    username = google_sql_user.this.name
    password = random_password.postgres.result
    # Cloud SQL's server certificate names the instance, not its IP, so the
    # CA is checked (verify-ca) but the host name cannot be.
    sslmode = "verify-ca"
    ca_pem  = google_sql_database_instance.this.server_ca_cert[0].cert
    cidrs   = ["${google_compute_global_address.services.address}/${google_compute_global_address.services.prefix_length}"]
  }
}

output "redis" {
  description = "The rate-limit counters' Redis: address (host:port), TLS, password, CA bundle and CIDRs."
  sensitive   = true
  value = {
    address  = "${google_redis_instance.this.host}:${google_redis_instance.this.port}"
    tls      = true
    password = google_redis_instance.this.auth_string
    ca_pem   = google_redis_instance.this.server_ca_certs[0].cert
    cidrs    = ["${google_compute_global_address.services.address}/${google_compute_global_address.services.prefix_length}"]
  }
}

output "load_balancer_annotations" {
  description = "Annotations of the gateway's and token server's LoadBalancer Services (GKE: none needed for an external passthrough Network Load Balancer)."
  value       = {}
}
