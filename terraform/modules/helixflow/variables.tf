variable "namespace" {
  description = "Namespace of the release (created, with the restricted Pod Security Standard enforced)."
  type        = string
  default     = "helixflow"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace: a DNS label (lowercase letters, digits, hyphens, at most 63)."
  }
}

variable "image_registry" {
  description = "Registry and path the images were pushed to by make images REGISTRY=..., e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/helixflow."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9._:]*[a-z0-9])?(/[a-z0-9]([-a-z0-9._]*[a-z0-9])?)*$", var.image_registry))
    error_message = "image_registry: a registry host and path without scheme or tag, e.g. ghcr.io/acme/helixflow."
  }
}

variable "image_tag" {
  description = "Tag of HelixFlow's images (make images VERSION=...)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag: a version tag such as 0.1.0; \"latest\" is refused."
  }
}

variable "gateway_host" {
  description = "Public DNS name of the gateway (gRPC and REST); point it at the gateway_address output."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.gateway_host))
    error_message = "gateway_host: a fully qualified DNS name such as infer.example.com."
  }
}

variable "auth_host" {
  description = "Public DNS name of the OAuth2 token server (helix-authz's issuer); point it at the token_server_address output."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.auth_host))
    error_message = "auth_host: a fully qualified DNS name such as auth.example.com."
  }
}

variable "client_cidrs" {
  description = "CIDRs allowed to reach the gateway's and the token server's load balancers; empty: any."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.client_cidrs : can(cidrhost(c, 0))])
    error_message = "client_cidrs: every entry must be a CIDR such as 203.0.113.0/24."
  }
}

variable "load_balancer_annotations" {
  description = "Annotations of the LoadBalancer Services (the cloud module's load_balancer_annotations output)."
  type        = map(string)
  default     = {}
}

variable "public_issuer" {
  description = "Name of an existing cert-manager ClusterIssuer (e.g. ACME) for the gateway's and token server's certificates; empty: the release's internal CA signs them and clients must trust it."
  type        = string
  default     = ""
}

variable "gpu_enabled" {
  description = "Whether the cluster has a GPU node pool (the cloud module's gpu_enabled output)."
  type        = bool
}

variable "gpu_node_selector" {
  description = "Node labels of the GPU nodes (the cloud module's gpu_node_selector output)."
  type        = map(string)
  default     = {}
}

variable "install_nvidia_device_plugin" {
  description = "Install NVIDIA's device plugin on the GPU nodes (the cloud module's install_nvidia_device_plugin output)."
  type        = bool
  default     = false
}

variable "nvidia_device_plugin_version" {
  description = "Version of NVIDIA's nvidia-device-plugin Helm chart."
  type        = string
  default     = "0.17.1"
}

variable "install_cert_manager" {
  description = "Install cert-manager (the chart's certificates need it); false when the cluster already runs it."
  type        = bool
  default     = true
}

variable "cert_manager_version" {
  description = "Version of the cert-manager Helm chart."
  type        = string
  default     = "v1.18.2"
}

variable "install_monitoring" {
  description = "Install kube-prometheus-stack (Prometheus, Alertmanager, Grafana) and turn on the chart's ServiceMonitors, PrometheusRules and dashboards."
  type        = bool
  default     = true
}

variable "kube_prometheus_stack_version" {
  description = "Version of the kube-prometheus-stack Helm chart."
  type        = string
  default     = "75.15.1"
}

variable "postgres" {
  description = "helix-authz's Postgres (the cloud module's postgres output)."
  type = object({
    host     = string
    port     = number
    database = string
    username = string
    password = string
    sslmode  = string
    ca_pem   = string
    cidrs    = list(string)
  })
  sensitive = true

  validation {
    condition     = contains(["require", "verify-ca", "verify-full"], var.postgres.sslmode) && length(var.postgres.cidrs) > 0 && alltrue([for c in var.postgres.cidrs : can(cidrhost(c, 0))])
    error_message = "postgres: sslmode must be require, verify-ca or verify-full, and cidrs at least one CIDR."
  }
}

variable "redis" {
  description = "The rate-limit counters' Redis (the cloud module's redis output)."
  type = object({
    address  = string
    tls      = bool
    password = string
    ca_pem   = string
    cidrs    = list(string)
  })
  sensitive = true

  validation {
    condition     = can(regex("^[^:]+:[0-9]+$", var.redis.address)) && length(var.redis.cidrs) > 0 && alltrue([for c in var.redis.cidrs : can(cidrhost(c, 0))])
    error_message = "redis: address must be host:port and cidrs at least one CIDR."
  }
}

variable "model_repository" {
  description = "Where the workers' Triton model repository comes from: an existing PersistentVolumeClaim in the namespace, or an OCI image mounted as a volume (Kubernetes 1.33+)."
  type = object({
    pvc_claim_name = optional(string, "")
    image          = optional(string, "")
  })

  validation {
    condition     = (var.model_repository.pvc_claim_name == "") != (var.model_repository.image == "")
    error_message = "model_repository: set exactly one of pvc_claim_name and image."
  }
}

variable "worker_pools" {
  description = "Worker pools: name, the models they serve, replicas, GPUs per pod (0: CPU), CPU and memory per pod."
  type = list(object({
    name     = string
    models   = list(string)
    replicas = optional(number, 2)
    gpus     = optional(number, 0)
    cpu      = optional(string, "2")
    memory   = optional(string, "4Gi")
  }))

  validation {
    condition     = length(var.worker_pools) > 0 && alltrue([for p in var.worker_pools : can(regex("^[a-z0-9]([-a-z0-9]{0,18}[a-z0-9])?$", p.name)) && length(p.models) > 0])
    error_message = "worker_pools: at least one pool; names are DNS labels of at most 20 characters and each pool lists at least one model."
  }

  validation {
    condition     = var.gpu_enabled || alltrue([for p in var.worker_pools : p.gpus == 0])
    error_message = "worker_pools: a pool asks for GPUs but gpu_enabled is false (the cluster has no GPU node pool)."
  }
}

variable "plans" {
  description = "Rate-limit plans: requests per second and per minute per client per model."
  type = map(object({
    requests_per_second = optional(number)
    requests_per_minute = optional(number)
  }))
  default = {
    free     = { requests_per_second = 5 }
    standard = { requests_per_second = 1000 }
  }
}

variable "extra_values" {
  description = "More chart values (YAML), applied last."
  type        = string
  default     = ""
}

variable "mail" {
  description = "The SMTP server of the people's mails (address verification, password reset): host:port, starttls (port 587) or tls (465), login, sender, the password, the server's CA (PEM, empty: system roots) and the CIDRs helix-authz may reach it at. null: the people's API (sign-up, login) is off."
  type = object({
    address  = string
    tls      = optional(string, "starttls")
    username = optional(string, "")
    password = optional(string, "")
    from     = string
    ca_pem   = optional(string, "")
    cidrs    = list(string)
  })
  default   = null
  sensitive = true

  validation {
    condition = var.mail == null || (
      can(regex("^[^:]+:[0-9]+$", var.mail.address)) && contains(["starttls", "tls"], var.mail.tls) &&
      var.mail.from != "" && length(var.mail.cidrs) > 0 && alltrue([for c in var.mail.cidrs : can(cidrhost(c, 0))])
    )
    error_message = "mail: address must be host:port, tls starttls or tls, from set, and cidrs at least one CIDR."
  }
}
