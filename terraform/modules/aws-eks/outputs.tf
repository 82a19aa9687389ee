# The same outputs as gcp-gke and azure-aks: the helixflow module takes
# them as they are (see terraform/envs/*/main.tf).

output "cluster_name" {
  description = "EKS cluster name."
  value       = aws_eks_cluster.this.name
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint."
  value       = aws_eks_cluster.this.endpoint
}

output "cluster_ca_certificate" {
  description = "PEM CA certificate of the Kubernetes API."
  value       = base64decode(aws_eks_cluster.this.certificate_authority[0].data)
}

output "kubeconfig_command" {
  description = "Command that writes a kubeconfig entry for the cluster."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${aws_eks_cluster.this.name}"
}

output "workload_identity" {
  description = "IRSA: the OIDC provider that IAM roles for service accounts trust."
  value       = { oidc_provider_arn = aws_iam_openid_connect_provider.this.arn, issuer = aws_eks_cluster.this.identity[0].oidc[0].issuer }
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
  description = "Whether the NVIDIA device plugin must be installed (EKS: yes, the NVIDIA AMI has the driver only)."
  value       = var.gpu_enabled
}

output "postgres" {
  description = "helix-authz's Postgres: host, port, database, user, password, sslmode, CA bundle (empty: the system roots) and the CIDRs it is reached at."
  sensitive   = true
  value = {
    host     = aws_db_instance.this.address
    port     = aws_db_instance.this.port
    database = aws_db_instance.this.db_name
    username = aws_db_instance.this.username
    password = random_password.postgres.result
    # The RDS CA is not in the system roots and the AWS provider cannot
    # fetch its PEM: TLS is required (rds.force_ssl) but not verified
    # unless the env passes the RDS bundle (postgres_ca_pem).
    sslmode = "require"
    ca_pem  = ""
    cidrs   = local.private_cidrs
  }
}

output "redis" {
  description = "The rate-limit counters' Redis: address (host:port), TLS, password, CA bundle (empty: the system roots) and CIDRs."
  sensitive   = true
  value = {
    address  = "${aws_elasticache_replication_group.this.primary_endpoint_address}:6379"
    tls      = true
    password = random_password.redis.result
    ca_pem   = ""
    cidrs    = local.private_cidrs
  }
}

output "load_balancer_annotations" {
  description = "Annotations of the gateway's and token server's LoadBalancer Services (an internet-facing NLB; needs the AWS Load Balancer Controller, else the in-tree controller makes a classic ELB)."
  value = {
    "service.beta.kubernetes.io/aws-load-balancer-type"            = "external"
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type" = "ip"
    "service.beta.kubernetes.io/aws-load-balancer-scheme"          = "internet-facing"
  }
}
