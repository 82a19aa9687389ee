# want: project_id: a GCP project id
# want: subnet_cidr: an IPv4 CIDR
# want: master_cidr: an IPv4 /28
# want: api_authorized_cidrs: at least one CIDR
# want: release_channel: RAPID, REGULAR or STABLE
# want: gpu_type: an NVIDIA accelerator type
# want: gpu_count: 1, 2, 4 or 8
name                 = "helixflow"
project_id           = "Acme"
region               = "europe-west4"
subnet_cidr          = "10.50.0.0/40"
master_cidr          = "172.16.0.0/24"
api_authorized_cidrs = []
release_channel      = "BETA"
gpu_type             = "tpu-v5"
gpu_count            = 3
