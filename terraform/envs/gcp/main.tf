# HelixFlow on GCP: a private regional GKE cluster with a CPU and a GPU node
# pool, Cloud SQL for Postgres, Memorystore for Redis, and the chart. Two
# commands (docs/deploy.md):
#   tofu init && tofu apply

module "cluster" {
  source = "../../modules/gcp-gke"

  name                 = var.name
  project_id           = var.project_id
  region               = var.region
  node_zones           = var.node_zones
  api_authorized_cidrs = var.api_authorized_cidrs
  gpu_enabled          = var.gpu_enabled
  gpu_machine_type     = var.gpu_machine_type
  gpu_type             = var.gpu_type
  gpu_count            = var.gpu_count
  labels               = var.labels
}

module "helixflow" {
  source = "../../modules/helixflow"

  image_registry               = var.image_registry
  image_tag                    = var.image_tag
  gateway_host                 = var.gateway_host
  auth_host                    = var.auth_host
  client_cidrs                 = var.client_cidrs
  public_issuer                = var.public_issuer
  load_balancer_annotations    = module.cluster.load_balancer_annotations
  gpu_enabled                  = module.cluster.gpu_enabled
  gpu_node_selector            = module.cluster.gpu_node_selector
  install_nvidia_device_plugin = module.cluster.install_nvidia_device_plugin
  postgres                     = module.cluster.postgres
  redis                        = module.cluster.redis
  model_repository             = var.model_repository
  worker_pools                 = var.worker_pools
}
