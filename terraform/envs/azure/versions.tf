terraform {
  required_version = ">= 1.9.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.0"
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
  # backend "azurerm" {
  #   resource_group_name  = "tfstate"
  #   storage_account_name = "acmetfstate"
  #   container_name       = "tfstate"
  #   key                  = "helixflow/azure.tfstate"
  #   use_azuread_auth     = true
  # }
}
