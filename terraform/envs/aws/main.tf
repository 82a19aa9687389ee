# HelixFlow on AWS: EKS with a CPU and a GPU node group, RDS for Postgres,
# ElastiCache for Redis, and the chart. Two commands (docs/deploy.md):
#   tofu init && tofu apply

module "cluster" {
  source = "../../modules/aws-eks"

  name                    = var.name
  region                  = var.region
  vpc_cidr                = var.vpc_cidr
  api_public_access_cidrs = var.api_public_access_cidrs
  gpu_enabled             = var.gpu_enabled
  gpu_instance_types      = var.gpu_instance_types
  gpu_node_count          = var.gpu_node_count
  tags                    = var.tags
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
