name                    = "helixflow"
region                  = "eu-west-1"
api_public_access_cidrs = ["203.0.113.0/24"]
gpu_instance_types      = ["p5.48xlarge"]
