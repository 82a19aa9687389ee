# No GPU pool but GPU workers asked for, a latest tag, bad host names and
# CIDRs, both model repository sources.
# want: worker_pools: a pool asks for GPUs but gpu_enabled is false
# want: image_tag: a version tag such as 0.1.0; "latest" is refused
# want: image_registry: a registry host and path
# want: gateway_host: a fully qualified DNS name
# want: client_cidrs: every entry must be a CIDR
# want: model_repository: set exactly one of pvc_claim_name and image
# want: postgres: sslmode must be require, verify-ca or verify-full
# want: redis: address must be host:port
image_registry = "https://registry.example.com/helixflow"
image_tag      = "latest"
gateway_host   = "infer"
auth_host      = "auth.example.com"
client_cidrs   = ["0.0.0.0/0", "everyone"]
gpu_enabled    = false
postgres = {
  host = "db.internal", port = 5432, database = "helixflow", username = "helixflow", password = "x"
  sslmode = "disable", ca_pem = "", cidrs = ["10.40.0.0/20"]
}
redis = {
  address = "redis.internal", tls = true, password = "x", ca_pem = "", cidrs = ["10.40.0.0/20"]
}
model_repository = { pvc_claim_name = "models", image = "registry.example.com/models:1" }
worker_pools = [
  { name = "gpu", models = ["mlp"], gpus = 1 },
]
