variable "name" {
  description = "Name of the deployment; prefixes every resource (lowercase letters, digits, hyphens)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name))
    error_message = "name: 3 to 20 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "project_id" {
  description = "GCP project id."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id: a GCP project id (6 to 30 lowercase letters, digits, hyphens)."
  }
}

variable "region" {
  description = "GCP region, e.g. europe-west4; the cluster is regional."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]$", var.region))
    error_message = "region: a GCP region such as europe-west4."
  }
}

variable "node_zones" {
  description = "Zones of the node pools (empty: the region's default zones). GPU types are not in every zone; see docs/deploy.md."
  type        = list(string)
  default     = []
}

variable "subnet_cidr" {
  description = "Primary range of the nodes' subnet."
  type        = string
  default     = "10.50.0.0/20"

  validation {
    condition     = can(cidrhost(var.subnet_cidr, 0))
    error_message = "subnet_cidr: an IPv4 CIDR such as 10.50.0.0/20."
  }
}

variable "pods_cidr" {
  description = "Secondary range for pods."
  type        = string
  default     = "10.52.0.0/14"

  validation {
    condition     = can(cidrhost(var.pods_cidr, 0))
    error_message = "pods_cidr: an IPv4 CIDR such as 10.52.0.0/14."
  }
}

variable "services_cidr" {
  description = "Secondary range for Services."
  type        = string
  default     = "10.56.0.0/20"

  validation {
    condition     = can(cidrhost(var.services_cidr, 0))
    error_message = "services_cidr: an IPv4 CIDR such as 10.56.0.0/20."
  }
}

variable "master_cidr" {
  description = "The /28 of the GKE control plane's private endpoint."
  type        = string
  default     = "172.16.0.0/28"

  validation {
    condition     = can(cidrhost(var.master_cidr, 0)) && endswith(var.master_cidr, "/28")
    error_message = "master_cidr: an IPv4 /28 such as 172.16.0.0/28."
  }
}

variable "api_authorized_cidrs" {
  description = "CIDRs allowed to reach the Kubernetes API."
  type        = list(string)

  validation {
    condition     = length(var.api_authorized_cidrs) > 0 && alltrue([for c in var.api_authorized_cidrs : can(cidrhost(c, 0))])
    error_message = "api_authorized_cidrs: at least one CIDR, each such as 203.0.113.0/24."
  }
}

variable "release_channel" {
  description = "GKE release channel."
  type        = string
  default     = "REGULAR"

  validation {
    condition     = contains(["RAPID", "REGULAR", "STABLE"], var.release_channel)
    error_message = "release_channel: RAPID, REGULAR or STABLE."
  }
}

variable "cpu_machine_type" {
  description = "Machine type of the CPU node pool."
  type        = string
  default     = "n2-standard-8"
}

variable "cpu_node_count" {
  description = "Minimum and maximum nodes per zone of the CPU node pool."
  type        = object({ min = number, max = number })
  default     = { min = 1, max = 4 }

  validation {
    condition     = var.cpu_node_count.min >= 1 && var.cpu_node_count.min <= var.cpu_node_count.max
    error_message = "cpu_node_count: need 1 <= min <= max."
  }
}

variable "gpu_enabled" {
  description = "Create the GPU node pool (GKE installs the driver and device plugin; nodes are tainted nvidia.com/gpu)."
  type        = bool
  default     = true
}

variable "gpu_machine_type" {
  description = "Machine type of the GPU node pool: g2-standard-8 (L4), a3-highgpu-8g (8x H100), a3-ultragpu-8g (8x H200)."
  type        = string
  default     = "g2-standard-8"
}

variable "gpu_type" {
  description = "Accelerator type: nvidia-l4, nvidia-h100-80gb, nvidia-h200-141gb, nvidia-a100-80gb, ..."
  type        = string
  default     = "nvidia-l4"

  validation {
    condition     = can(regex("^nvidia-", var.gpu_type))
    error_message = "gpu_type: an NVIDIA accelerator type such as nvidia-l4 or nvidia-h100-80gb."
  }
}

variable "gpu_count" {
  description = "GPUs per GPU node."
  type        = number
  default     = 1

  validation {
    condition     = contains([1, 2, 4, 8], var.gpu_count)
    error_message = "gpu_count: 1, 2, 4 or 8."
  }
}

variable "gpu_node_count" {
  description = "Minimum and maximum nodes per zone of the GPU node pool."
  type        = object({ min = number, max = number })
  default     = { min = 0, max = 2 }

  validation {
    condition     = var.gpu_node_count.min >= 0 && var.gpu_node_count.min <= var.gpu_node_count.max && var.gpu_node_count.max >= 1
    error_message = "gpu_node_count: need 0 <= min <= max and max >= 1."
  }
}

variable "postgres_tier" {
  description = "Cloud SQL machine tier of helix-authz's Postgres."
  type        = string
  default     = "db-custom-2-7680"
}

variable "postgres_version" {
  description = "Cloud SQL database version."
  type        = string
  default     = "POSTGRES_18"

  validation {
    condition     = can(regex("^POSTGRES_1[4-9]$", var.postgres_version))
    error_message = "postgres_version: POSTGRES_14 to POSTGRES_19."
  }
}

variable "postgres_backup_retention_days" {
  description = "Days of automated backups kept; point-in-time recovery reaches back up to 7 days of logs."
  type        = number
  default     = 14

  validation {
    condition     = var.postgres_backup_retention_days >= 7 && var.postgres_backup_retention_days <= 365
    error_message = "postgres_backup_retention_days: 7 to 365."
  }
}

variable "redis_memory_gb" {
  description = "Memorystore capacity in GiB."
  type        = number
  default     = 5

  validation {
    condition     = var.redis_memory_gb >= 1 && var.redis_memory_gb <= 300
    error_message = "redis_memory_gb: 1 to 300."
  }
}

variable "labels" {
  description = "Labels on every resource that takes them."
  type        = map(string)
  default     = {}
}
