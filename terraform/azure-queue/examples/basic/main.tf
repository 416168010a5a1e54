# A Service Bus namespace with an app's queues, for `cloudq worker` processes. Not applied in
# cloudq's tests: the azurerm provider cannot be installed there.

terraform {
  required_version = ">= 1.5"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 4.9, < 5.0"
    }
  }
}

variable "subscription_id" {
  description = "Azure subscription id."
  type        = string
}

provider "azurerm" {
  features {}
  subscription_id = var.subscription_id
}

resource "azurerm_resource_group" "this" {
  name     = "shop-cloudq"
  location = "westeurope"
}

module "queues" {
  source = "../.."

  resource_group_name = azurerm_resource_group.this.name
  location            = azurerm_resource_group.this.location
  namespace_name      = "shop-cloudq-bus"
  prefix              = "shop-"
  queues = {
    default = {}
    high    = { visibility_timeout_seconds = 60, max_receive_count = 5 }
  }
}

output "broker_url" {
  description = "CLOUDQ_BROKER_URL for the workers and producers."
  value       = module.queues.broker_url
}
