# Installs HelixFlow's chart (deploy/helm/helixflow) into a cluster made by
# aws-eks, gcp-gke or azure-aks, with what it needs first: the namespace,
# the Secrets the chart references (database URL, KEK, admin token, Redis
# password, CA bundles), cert-manager, NVIDIA's device plugin and
# kube-prometheus-stack. Secret values pass through the Terraform state:
# keep the state in an encrypted backend (docs/deploy.md).

locals {
  chart_path = "${path.module}/../../../deploy/helm/helixflow"
  issuer     = "https://${var.auth_host}"
  # Whether there is a CA bundle is no secret (nor is a CA certificate);
  # count cannot depend on a sensitive value.
  postgres_ca   = nonsensitive(var.postgres.ca_pem != "")
  redis_ca      = nonsensitive(var.redis.ca_pem != "")
  mail_password = nonsensitive(var.mail != null && try(var.mail.password, "") != "")
  mail_ca       = nonsensitive(var.mail != null && try(var.mail.ca_pem, "") != "")

  database_url = format("postgres://%s:%s@%s:%d/%s?sslmode=%s",
    urlencode(var.postgres.username), urlencode(var.postgres.password),
  var.postgres.host, var.postgres.port, var.postgres.database, var.postgres.sslmode)

  pools = [for p in var.worker_pools : {
    name     = p.name
    models   = p.models
    replicas = p.replicas
    gpus     = p.gpus
    modelRepository = var.model_repository.pvc_claim_name != "" ? {
      persistentVolumeClaim = { claimName = var.model_repository.pvc_claim_name }
      } : {
      image = { reference = var.model_repository.image }
    }
    resources = {
      requests = { cpu = p.cpu, memory = p.memory }
      limits   = { memory = p.memory }
    }
  }]

  values = {
    images = { registry = var.image_registry, tag = var.image_tag }
    gateway = {
      hosts = [var.gateway_host]
      service = {
        type                     = "LoadBalancer"
        port                     = 443
        annotations              = var.load_balancer_annotations
        loadBalancerSourceRanges = var.client_cidrs
      }
      config = {
        plans = { for k, v in var.plans : k => { for kk, vv in v : kk => vv if vv != null } }
      }
    }
    authz = {
      issuer = local.issuer
      service = {
        type                     = "LoadBalancer"
        port                     = 443
        annotations              = var.load_balancer_annotations
        loadBalancerSourceRanges = var.client_cidrs
      }
      secrets = {
        database   = { name = kubernetes_secret_v1.database.metadata[0].name, key = "url" }
        kek        = { name = kubernetes_secret_v1.kek.metadata[0].name, key = "kek" }
        adminToken = { name = kubernetes_secret_v1.admin_token.metadata[0].name, key = "token" }
        postgresCA = { name = local.postgres_ca ? kubernetes_secret_v1.postgres_ca[0].metadata[0].name : "", key = "ca.crt" }
        smtpPassword = {
          name = local.mail_password ? kubernetes_secret_v1.smtp_password[0].metadata[0].name : "", key = "password"
        }
        smtpCA = { name = local.mail_ca ? kubernetes_secret_v1.smtp_ca[0].metadata[0].name : "", key = "ca.crt" }
      }
      mail = var.mail == null ? { smtpAddress = "", smtpTLS = "starttls", smtpUsername = "", from = "" } : {
        smtpAddress  = var.mail.address
        smtpTLS      = var.mail.tls
        smtpUsername = var.mail.username
        from         = var.mail.from
      }
    }
    redis = {
      mode = "external"
      external = {
        address  = var.redis.address
        tls      = var.redis.tls
        caSecret = { name = local.redis_ca ? kubernetes_secret_v1.redis_ca[0].metadata[0].name : "", key = "ca.crt" }
      }
      auth = { name = kubernetes_secret_v1.redis.metadata[0].name, key = "password" }
    }
    gpu = {
      enabled      = var.gpu_enabled
      nodeSelector = var.gpu_node_selector
    }
    workers = { pools = local.pools }
    tls = {
      certManager = {
        enabled         = true
        publicIssuerRef = var.public_issuer != "" ? { name = var.public_issuer, kind = "ClusterIssuer" } : {}
      }
    }
    networkPolicy = {
      enabled       = true
      postgres      = { cidrs = var.postgres.cidrs, port = var.postgres.port }
      externalRedis = { cidrs = var.redis.cidrs, port = tonumber(split(":", var.redis.address)[1]) }
      smtp          = { cidrs = var.mail == null ? [] : var.mail.cidrs }
    }
    monitoring = {
      serviceMonitor = { enabled = var.install_monitoring, labels = { release = "kube-prometheus-stack" } }
      prometheusRule = { enabled = var.install_monitoring, labels = { release = "kube-prometheus-stack" } }
      dashboards     = { enabled = var.install_monitoring, annotations = { grafana_folder = "HelixFlow" } }
    }
  }
}

resource "kubernetes_namespace_v1" "this" {
  metadata {
    name = var.namespace
    labels = {
      "pod-security.kubernetes.io/enforce" = "restricted"
      "pod-security.kubernetes.io/audit"   = "restricted"
    }
  }
}

# The key-encryption key of helix-authz's signing keys. Back it up apart
# from the database (docs/deploy.md): without it the sealed keys are lost.
resource "random_id" "kek" {
  byte_length = 32
}

resource "random_password" "admin_token" {
  length  = 48
  special = false
}

resource "kubernetes_secret_v1" "database" {
  metadata {
    name      = "helixflow-postgres"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  data = { url = local.database_url }
}

resource "kubernetes_secret_v1" "kek" {
  metadata {
    name      = "helixflow-authz-kek"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  data = { kek = random_id.kek.hex }
}

resource "kubernetes_secret_v1" "admin_token" {
  metadata {
    name      = "helixflow-admin-token"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  data = { token = random_password.admin_token.result }
}

resource "kubernetes_secret_v1" "redis" {
  metadata {
    name      = "helixflow-redis"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  data = { password = var.redis.password }
}

resource "kubernetes_secret_v1" "smtp_password" {
  count = local.mail_password ? 1 : 0
  metadata {
    name      = "helixflow-smtp-password"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  data = { password = var.mail.password }
}

resource "kubernetes_secret_v1" "smtp_ca" {
  count = local.mail_ca ? 1 : 0
  metadata {
    name      = "helixflow-smtp-ca"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  data = { "ca.crt" = var.mail.ca_pem }
}

resource "kubernetes_secret_v1" "postgres_ca" {
  count = local.postgres_ca ? 1 : 0
  metadata {
    name      = "helixflow-postgres-ca"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  data = { "ca.crt" = var.postgres.ca_pem }
}

resource "kubernetes_secret_v1" "redis_ca" {
  count = local.redis_ca ? 1 : 0
  metadata {
    name      = "helixflow-redis-ca"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  data = { "ca.crt" = var.redis.ca_pem }
}

resource "helm_release" "cert_manager" {
  count            = var.install_cert_manager ? 1 : 0
  name             = "cert-manager"
  repository       = "https://charts.jetstack.io"
  chart            = "cert-manager"
  version          = var.cert_manager_version
  namespace        = "cert-manager"
  create_namespace = true
  wait             = true
  values           = [yamlencode({ crds = { enabled = true } })]
}

resource "helm_release" "nvidia_device_plugin" {
  count            = var.gpu_enabled && var.install_nvidia_device_plugin ? 1 : 0
  name             = "nvidia-device-plugin"
  repository       = "https://nvidia.github.io/k8s-device-plugin"
  chart            = "nvidia-device-plugin"
  version          = var.nvidia_device_plugin_version
  namespace        = "nvidia-device-plugin"
  create_namespace = true
  values = [yamlencode({
    nodeSelector = var.gpu_node_selector
    tolerations  = [{ key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" }]
  })]
}

resource "helm_release" "monitoring" {
  count            = var.install_monitoring ? 1 : 0
  name             = "kube-prometheus-stack"
  repository       = "https://prometheus-community.github.io/helm-charts"
  chart            = "kube-prometheus-stack"
  version          = var.kube_prometheus_stack_version
  namespace        = "monitoring"
  create_namespace = true
  wait             = true
  values = [yamlencode({
    grafana = {
      sidecar = { dashboards = { enabled = true, label = "grafana_dashboard", searchNamespace = "ALL", folderAnnotation = "grafana_folder" } }
    }
  })]
}

resource "helm_release" "helixflow" {
  name      = "helixflow"
  chart     = local.chart_path
  namespace = kubernetes_namespace_v1.this.metadata[0].name
  wait      = true
  timeout   = 1200
  values    = compact([yamlencode(local.values), var.extra_values])

  depends_on = [helm_release.cert_manager, helm_release.nvidia_device_plugin, helm_release.monitoring]
}

data "kubernetes_service_v1" "gateway" {
  metadata {
    name      = "helixflow-gateway"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  depends_on = [helm_release.helixflow]
}

data "kubernetes_service_v1" "oauth" {
  metadata {
    name      = "helixflow-authz-oauth"
    namespace = kubernetes_namespace_v1.this.metadata[0].name
  }
  depends_on = [helm_release.helixflow]
}
