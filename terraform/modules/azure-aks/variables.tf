variable "name" {
  description = "Name of the deployment; prefixes every resource (lowercase letters and digits, 3 to 20)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,19}$", var.name))
    error_message = "name: 3 to 20 lowercase letters or digits, starting with a letter (Azure names forbid hyphens in some resources)."
  }
}

variable "location" {
  description = "Azure region, e.g. westeurope."
  type        = string

  validation {
    condition     = can(regex("^[a-z]+[a-z0-9]*$", var.location))
    error_message = "location: an Azure region name such as westeurope."
  }
}

variable "zones" {
  description = "Availability zones of the node pools, Postgres (primary, standby) and Redis."
  type        = list(string)
  default     = ["1", "2", "3"]

  validation {
    condition     = length(var.zones) >= 2 && alltrue([for z in var.zones : contains(["1", "2", "3"], z)])
    error_message = "zones: at least two of \"1\", \"2\", \"3\"."
  }
}

variable "vnet_cidr" {
  description = "Address space of the virtual network; split into the AKS, Postgres and private-endpoint subnets."
  type        = string
  default     = "10.60.0.0/16"

  validation {
    condition     = can(cidrhost(var.vnet_cidr, 0)) && try(tonumber(split("/", var.vnet_cidr)[1]), 99) <= 18
    error_message = "vnet_cidr: an IPv4 CIDR of /18 or larger, e.g. 10.60.0.0/16."
  }
}

variable "kubernetes_version" {
  description = "AKS Kubernetes version (major.minor)."
  type        = string
  default     = "1.33"

  validation {
    condition     = can(regex("^1\\.(3[0-9])$", var.kubernetes_version))
    error_message = "kubernetes_version: 1.30 or later, as major.minor."
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

variable "admin_group_object_ids" {
  description = "Entra ID groups that administer the cluster (Azure RBAC)."
  type        = list(string)

  validation {
    condition     = length(var.admin_group_object_ids) > 0 && alltrue([for g in var.admin_group_object_ids : can(regex("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", g))])
    error_message = "admin_group_object_ids: at least one Entra ID group object id (a GUID)."
  }
}

variable "system_vm_size" {
  description = "VM size of the system node pool (two to three nodes for AKS's own pods)."
  type        = string
  default     = "Standard_D4ds_v5"
}

variable "cpu_vm_size" {
  description = "VM size of the CPU node pool (Envoy, helix-xds, helix-authz, CPU workers)."
  type        = string
  default     = "Standard_D8ds_v5"
}

variable "cpu_node_count" {
  description = "Minimum and maximum nodes of the CPU node pool."
  type        = object({ min = number, max = number })
  default     = { min = 2, max = 10 }

  validation {
    condition     = var.cpu_node_count.min >= 1 && var.cpu_node_count.min <= var.cpu_node_count.max
    error_message = "cpu_node_count: need 1 <= min <= max."
  }
}

variable "gpu_enabled" {
  description = "Create the GPU node pool (tainted nvidia.com/gpu=present:NoSchedule, labeled helixflow.io/pool=gpu)."
  type        = bool
  default     = true
}

variable "gpu_vm_size" {
  description = "VM size of the GPU node pool: Standard_NC24ads_A100_v4 (A100), Standard_NC40ads_H100_v5 (H100 NVL), Standard_ND96isr_H100_v5 (8x H100)."
  type        = string
  default     = "Standard_NC24ads_A100_v4"

  validation {
    condition     = can(regex("^Standard_N[CDV]", var.gpu_vm_size))
    error_message = "gpu_vm_size: an NVIDIA GPU size (Standard_NC..., Standard_ND..., Standard_NV...)."
  }
}

variable "gpu_node_count" {
  description = "Minimum and maximum nodes of the GPU node pool."
  type        = object({ min = number, max = number })
  default     = { min = 0, max = 2 }

  validation {
    condition     = var.gpu_node_count.min >= 0 && var.gpu_node_count.min <= var.gpu_node_count.max && var.gpu_node_count.max >= 1
    error_message = "gpu_node_count: need 0 <= min <= max and max >= 1."
  }
}

variable "postgres_sku" {
  description = "SKU of the Azure Database for PostgreSQL flexible server."
  type        = string
  default     = "GP_Standard_D2ds_v5"

  validation {
    condition     = can(regex("^(B|GP|MO)_", var.postgres_sku))
    error_message = "postgres_sku: a flexible server SKU such as GP_Standard_D2ds_v5."
  }
}

variable "postgres_version" {
  description = "PostgreSQL major version of the flexible server."
  type        = string
  default     = "16"
}

variable "postgres_storage_mb" {
  description = "Storage of the flexible server in MiB."
  type        = number
  default     = 65536
}

variable "postgres_backup_retention_days" {
  description = "Days of backups, which bound point-in-time restore."
  type        = number
  default     = 14

  validation {
    condition     = var.postgres_backup_retention_days >= 7 && var.postgres_backup_retention_days <= 35
    error_message = "postgres_backup_retention_days: 7 to 35."
  }
}

variable "redis_capacity" {
  description = "Azure Cache for Redis Premium capacity (P1 to P5)."
  type        = number
  default     = 1

  validation {
    condition     = var.redis_capacity >= 1 && var.redis_capacity <= 5
    error_message = "redis_capacity: 1 to 5."
  }
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default     = {}
}
