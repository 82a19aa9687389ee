terraform {
  required_version = ">= 1.9.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "~> 3.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.36.0, < 4.0.0"
    }
  }

  # Keep the state (it holds the database and Redis passwords and the KEK)
  # in an encrypted, access-controlled backend, e.g.:
  # backend "gcs" {
  #   bucket = "acme-tofu-state"
  #   prefix = "helixflow/gcp"
  # }
}
