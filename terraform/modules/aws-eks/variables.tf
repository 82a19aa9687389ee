variable "name" {
  description = "Name of the deployment; prefixes every resource (lowercase letters, digits, hyphens)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name))
    error_message = "name: 3 to 24 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "AWS region, e.g. eu-west-1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region: an AWS region name such as eu-west-1."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the VPC; split into one public and one private subnet per availability zone."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && try(tonumber(split("/", var.vpc_cidr)[1]), 99) <= 20
    error_message = "vpc_cidr: an IPv4 CIDR of /20 or larger, e.g. 10.40.0.0/16."
  }
}

variable "availability_zone_count" {
  description = "Availability zones to spread the subnets, nodes, RDS and ElastiCache over."
  type        = number
  default     = 3

  validation {
    condition     = var.availability_zone_count >= 2 && var.availability_zone_count <= 4
    error_message = "availability_zone_count: 2 to 4 (EKS, RDS Multi-AZ and ElastiCache need at least 2)."
  }
}

variable "kubernetes_version" {
  description = "EKS Kubernetes version (major.minor)."
  type        = string
  default     = "1.33"

  validation {
    condition     = can(regex("^1\\.(3[0-9])$", var.kubernetes_version))
    error_message = "kubernetes_version: 1.30 or later, as major.minor."
  }
}

variable "api_public_access_cidrs" {
  description = "CIDRs allowed to reach the EKS API endpoint from the internet; empty turns the public endpoint off."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.api_public_access_cidrs : can(cidrhost(c, 0))])
    error_message = "api_public_access_cidrs: every entry must be a CIDR such as 203.0.113.0/24."
  }
}

variable "cpu_instance_types" {
  description = "Instance types of the CPU node group (Envoy, helix-xds, helix-authz, CPU workers)."
  type        = list(string)
  default     = ["m7i.2xlarge"]
}

variable "cpu_node_count" {
  description = "Minimum, desired and maximum nodes of the CPU node group."
  type        = object({ min = number, desired = number, max = number })
  default     = { min = 3, desired = 3, max = 10 }

  validation {
    condition     = var.cpu_node_count.min >= 1 && var.cpu_node_count.min <= var.cpu_node_count.desired && var.cpu_node_count.desired <= var.cpu_node_count.max
    error_message = "cpu_node_count: need 1 <= min <= desired <= max."
  }
}

variable "gpu_enabled" {
  description = "Create the GPU node group (NVIDIA AMI, tainted nvidia.com/gpu=true:NoSchedule, labeled helixflow.io/pool=gpu)."
  type        = bool
  default     = true
}

variable "gpu_instance_types" {
  description = "Instance types of the GPU node group: g6e.xlarge (L40S), p5.48xlarge (8x H100), p5e.48xlarge (8x H200); see docs/deploy.md."
  type        = list(string)
  default     = ["g6e.2xlarge"]

  validation {
    condition     = alltrue([for t in var.gpu_instance_types : can(regex("^(g4dn|g5|g6|g6e|gr6|p4d|p4de|p5|p5e|p5en|p6-b200)\\.", t))])
    error_message = "gpu_instance_types: NVIDIA GPU instance types only (g4dn, g5, g6, g6e, gr6, p4d, p4de, p5, p5e, p5en, p6-b200)."
  }
}

variable "gpu_node_count" {
  description = "Minimum, desired and maximum nodes of the GPU node group."
  type        = object({ min = number, desired = number, max = number })
  default     = { min = 1, desired = 1, max = 4 }

  validation {
    condition     = var.gpu_node_count.min >= 0 && var.gpu_node_count.min <= var.gpu_node_count.desired && var.gpu_node_count.desired <= var.gpu_node_count.max && var.gpu_node_count.max >= 1
    error_message = "gpu_node_count: need 0 <= min <= desired <= max and max >= 1."
  }
}

variable "postgres_instance_class" {
  description = "RDS instance class of helix-authz's Postgres."
  type        = string
  default     = "db.m7g.large"

  validation {
    condition     = can(regex("^db\\.", var.postgres_instance_class))
    error_message = "postgres_instance_class: an RDS class such as db.m7g.large."
  }
}

variable "postgres_version" {
  description = "RDS PostgreSQL major version."
  type        = string
  default     = "17"
}

variable "postgres_storage_gb" {
  description = "Allocated storage in GiB (autoscaling up to four times this)."
  type        = number
  default     = 50

  validation {
    condition     = var.postgres_storage_gb >= 20 && var.postgres_storage_gb <= 16384
    error_message = "postgres_storage_gb: 20 to 16384."
  }
}

variable "postgres_backup_retention_days" {
  description = "Days of automated backups, which bound point-in-time restore."
  type        = number
  default     = 14

  validation {
    condition     = var.postgres_backup_retention_days >= 7 && var.postgres_backup_retention_days <= 35
    error_message = "postgres_backup_retention_days: 7 to 35."
  }
}

variable "redis_node_type" {
  description = "ElastiCache node type of the rate-limit counters."
  type        = string
  default     = "cache.m7g.large"

  validation {
    condition     = can(regex("^cache\\.", var.redis_node_type))
    error_message = "redis_node_type: an ElastiCache node type such as cache.m7g.large."
  }
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
