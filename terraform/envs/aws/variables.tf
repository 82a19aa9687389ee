variable "name" {
  description = "Name of the deployment (prefix of every AWS resource)."
  type        = string
  default     = "helixflow"
}

variable "region" {
  description = "AWS region."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR of the VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "api_public_access_cidrs" {
  description = "CIDRs allowed to reach the EKS API (where you run tofu and kubectl)."
  type        = list(string)
}

variable "gpu_enabled" {
  description = "Create the GPU node group."
  type        = bool
  default     = true
}

variable "gpu_instance_types" {
  description = "GPU instance types (docs/deploy.md, sizing)."
  type        = list(string)
  default     = ["g6e.2xlarge"]
}

variable "gpu_node_count" {
  description = "Minimum, desired and maximum GPU nodes."
  type        = object({ min = number, desired = number, max = number })
  default     = { min = 1, desired = 1, max = 4 }
}

variable "image_registry" {
  description = "Registry the images were pushed to (make images REGISTRY=...)."
  type        = string
}

variable "image_tag" {
  description = "Tag of the images (make images VERSION=...)."
  type        = string
}

variable "gateway_host" {
  description = "Public DNS name of the gateway."
  type        = string
}

variable "auth_host" {
  description = "Public DNS name of the token server."
  type        = string
}

variable "client_cidrs" {
  description = "CIDRs allowed to reach the load balancers; empty: any."
  type        = list(string)
  default     = []
}

variable "public_issuer" {
  description = "Existing cert-manager ClusterIssuer for the public certificates; empty: the internal CA."
  type        = string
  default     = ""
}

variable "model_repository" {
  description = "The workers' model repository: pvc_claim_name or image."
  type = object({
    pvc_claim_name = optional(string, "")
    image          = optional(string, "")
  })
}

variable "worker_pools" {
  description = "Worker pools (name, models, replicas, gpus, cpu, memory)."
  type = list(object({
    name     = string
    models   = list(string)
    replicas = optional(number, 2)
    gpus     = optional(number, 0)
    cpu      = optional(string, "2")
    memory   = optional(string, "4Gi")
  }))
}

variable "tags" {
  description = "Tags on every AWS resource."
  type        = map(string)
  default     = {}
}
