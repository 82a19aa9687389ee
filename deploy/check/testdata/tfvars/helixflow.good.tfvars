image_registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/helixflow"
image_tag      = "0.1.0"
gateway_host   = "infer.example.com"
auth_host      = "auth.example.com"
gpu_enabled    = true
postgres = {
  host = "db.internal", port = 5432, database = "helixflow", username = "helixflow", password = "x"
  sslmode = "verify-full", ca_pem = "", cidrs = ["10.40.0.0/20"]
}
redis = {
  address = "redis.internal:6379", tls = true, password = "x", ca_pem = "", cidrs = ["10.40.0.0/20"]
}
model_repository = { pvc_claim_name = "models" }
worker_pools = [
  { name = "cpu", models = ["simple"] },
  { name = "gpu", models = ["mlp"], gpus = 1 },
]
