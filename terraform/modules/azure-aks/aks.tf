# AKS with Azure CNI overlay and Cilium (NetworkPolicy enforcement), Entra
# ID + Azure RBAC only (no local accounts), Workload Identity, an API
# limited to api_authorized_cidrs, a system pool, a CPU pool and a GPU pool.

resource "azurerm_kubernetes_cluster" "this" {
  #checkov:skip=CKV_AZURE_6:authorized_ip_ranges is set from var.api_authorized_cidrs, which the module's validation requires to be non-empty; checkov cannot see the value.
  #checkov:skip=CKV_AZURE_115:The API is public but limited to api_authorized_cidrs with Entra ID auth only; a private cluster would need a jump host for the two-command install.
  #checkov:skip=CKV_AZURE_117:Node OS disks are encrypted with platform-managed keys and host encryption; a customer-managed disk encryption set is left to operators who need one.
  #checkov:skip=CKV_AZURE_226:Ephemeral OS disks are not offered on every GPU size this module allows; managed disks are used.
  name                              = "${local.prefix}-aks"
  location                          = azurerm_resource_group.this.location
  resource_group_name               = azurerm_resource_group.this.name
  dns_prefix                        = local.prefix
  kubernetes_version                = var.kubernetes_version
  sku_tier                          = "Standard"
  automatic_upgrade_channel         = "patch"
  node_os_upgrade_channel           = "NodeImage"
  oidc_issuer_enabled               = true
  workload_identity_enabled         = true
  local_account_disabled            = true
  role_based_access_control_enabled = true
  azure_policy_enabled              = true
  tags                              = local.tags

  # System pods only (CoreDNS, metrics, CNI); HelixFlow runs on the cpu
  # and gpu pools.
  default_node_pool {
    name                         = "system"
    vm_size                      = var.system_vm_size
    vnet_subnet_id               = azurerm_subnet.aks.id
    zones                        = var.zones
    auto_scaling_enabled         = true
    min_count                    = 2
    max_count                    = 3
    max_pods                     = 110
    host_encryption_enabled      = true
    only_critical_addons_enabled = true
    upgrade_settings {
      max_surge = "33%"
    }
  }

  identity {
    type = "SystemAssigned"
  }

  azure_active_directory_role_based_access_control {
    azure_rbac_enabled     = true
    admin_group_object_ids = var.admin_group_object_ids
  }

  api_server_access_profile {
    authorized_ip_ranges = var.api_authorized_cidrs
  }

  network_profile {
    network_plugin      = "azure"
    network_plugin_mode = "overlay"
    network_data_plane  = "cilium"
    network_policy      = "cilium"
    load_balancer_sku   = "standard"
  }

  oms_agent {
    log_analytics_workspace_id = azurerm_log_analytics_workspace.this.id
  }

  key_vault_secrets_provider {
    secret_rotation_enabled = true
  }

  lifecycle {
    ignore_changes = [default_node_pool[0].node_count]
  }
}

resource "azurerm_kubernetes_cluster_node_pool" "cpu" {
  name                    = "cpu"
  kubernetes_cluster_id   = azurerm_kubernetes_cluster.this.id
  vm_size                 = var.cpu_vm_size
  vnet_subnet_id          = azurerm_subnet.aks.id
  zones                   = var.zones
  auto_scaling_enabled    = true
  min_count               = var.cpu_node_count.min
  max_count               = var.cpu_node_count.max
  max_pods                = 110
  host_encryption_enabled = true
  node_labels             = { "helixflow.io/pool" = "cpu" }
  tags                    = local.tags

  upgrade_settings {
    max_surge = "33%"
  }
}

# AKS installs the NVIDIA driver on GPU sizes; the NVIDIA device plugin
# (installed by the helixflow module) advertises nvidia.com/gpu.
resource "azurerm_kubernetes_cluster_node_pool" "gpu" {
  count                   = var.gpu_enabled ? 1 : 0
  name                    = "gpu"
  kubernetes_cluster_id   = azurerm_kubernetes_cluster.this.id
  vm_size                 = var.gpu_vm_size
  vnet_subnet_id          = azurerm_subnet.aks.id
  zones                   = var.zones
  auto_scaling_enabled    = true
  min_count               = var.gpu_node_count.min
  max_count               = var.gpu_node_count.max
  max_pods                = 110
  host_encryption_enabled = true
  node_labels             = { "helixflow.io/pool" = "gpu" }
  node_taints             = ["nvidia.com/gpu=present:NoSchedule"]
  tags                    = local.tags

  upgrade_settings {
    max_surge = "1"
  }
}
