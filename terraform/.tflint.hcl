# tflint (make test-deploy runs it on every module and env): the bundled
# Terraform ruleset, every rule. No cloud plugin: those are downloaded,
# and this repository's checks run offline.
config {
  call_module_type = "local"
}

plugin "terraform" {
  enabled = true
  preset  = "all"
}
