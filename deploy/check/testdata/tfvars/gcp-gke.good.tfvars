name                 = "helixflow"
project_id           = "acme-inference"
region               = "europe-west4"
api_authorized_cidrs = ["203.0.113.0/24"]
gpu_type             = "nvidia-h100-80gb"
gpu_count            = 8
