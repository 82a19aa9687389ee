variable "name" {
  description = "Name of the deployment (prefix of every GCP resource)."
  type        = string
  default     = "helixflow"
}

variable "project_id" {
  description = "GCP project id."
  type        = string
}

variable "region" {
  description = "GCP region."
  type        = string
}

variable "node_zones" {
  description = "Zones of the node pools (where the GPU type is offered); empty: the region's default."
  type        = list(string)
  default     = []
}

variable "api_authorized_cidrs" {
  description = "CIDRs allowed to reach the Kubernetes API (where you run tofu and kubectl)."
  type        = list(string)
}

variable "gpu_enabled" {
  description = "Create the GPU node pool."
  type        = bool
  default     = true
}

variable "gpu_machine_type" {
  description = "GPU machine type (docs/deploy.md, sizing)."
  type        = string
  default     = "g2-standard-8"
}

variable "gpu_type" {
  description = "GPU accelerator type."
  type        = string
  default     = "nvidia-l4"
}

variable "gpu_count" {
  description = "GPUs per GPU node."
  type        = number
  default     = 1
}

variable "labels" {
  description = "Labels on every GCP resource that takes them."
  type        = map(string)
  default     = {}
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
