# want: name: 3 to 24 lowercase letters
# want: region: an AWS region name
# want: vpc_cidr: an IPv4 CIDR of /20 or larger
# want: kubernetes_version: 1.30 or later
# want: api_public_access_cidrs: every entry must be a CIDR
# want: gpu_instance_types: NVIDIA GPU instance types only
# want: cpu_node_count: need 1 <= min <= desired <= max
# want: postgres_backup_retention_days: 7 to 35
name                           = "Helix_Flow"
region                         = "europe"
vpc_cidr                       = "10.40.0.0/33"
kubernetes_version             = "1.29"
api_public_access_cidrs        = ["203.0.113.7"]
gpu_instance_types             = ["m7i.large"]
cpu_node_count                 = { min = 5, desired = 3, max = 10 }
postgres_backup_retention_days = 1
