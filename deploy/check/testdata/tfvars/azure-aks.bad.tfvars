# want: name: 3 to 20 lowercase letters or digits
# want: zones: at least two of
# want: vnet_cidr: an IPv4 CIDR of /18 or larger
# want: api_authorized_cidrs: at least one CIDR
# want: admin_group_object_ids: at least one Entra ID group object id
# want: gpu_vm_size: an NVIDIA GPU size
# want: gpu_node_count: need 0 <= min <= max
name                   = "helix-flow"
location               = "westeurope"
zones                  = ["1"]
vnet_cidr              = "10.60.0.0/24"
api_authorized_cidrs   = ["10.0.0.0/99"]
admin_group_object_ids = ["admins"]
gpu_vm_size            = "Standard_D8s_v5"
gpu_node_count         = { min = 3, max = 1 }
