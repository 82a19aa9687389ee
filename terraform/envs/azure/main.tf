# HelixFlow on Azure: AKS with a CPU and a GPU node pool, Azure Database for
# PostgreSQL flexible server, Azure Cache for Redis, and the chart. Two
# commands (docs/deploy.md):
#   tofu init && tofu apply

module "cluster" {
  source = "../../modules/azure-aks"

  name                   = var.name
  location               = var.location
  api_authorized_cidrs   = var.api_authorized_cidrs
  admin_group_object_ids = var.admin_group_object_ids
  gpu_enabled            = var.gpu_enabled
  gpu_vm_size            = var.gpu_vm_size
  tags                   = var.tags
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
