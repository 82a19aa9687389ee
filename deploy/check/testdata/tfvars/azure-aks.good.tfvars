name                   = "helixflow"
location               = "westeurope"
api_authorized_cidrs   = ["203.0.113.0/24"]
admin_group_object_ids = ["0b6f0c6e-6a53-4d0c-9c58-1f2a3b4c5d6e"]
gpu_vm_size            = "Standard_NC40ads_H100_v5"
