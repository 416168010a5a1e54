# A cloudq app on Azure Functions: a Service Bus namespace with the app's queues (each with its
# dead-letter subqueue) and a Function App with one Service Bus trigger per queue. Inputs:
#
#   cloudq -A tasks terraform export -o cloudq.auto.tfvars.json   # app, queue_prefix, queues, ...
#   cloudq -A tasks deploy package --target azure-functions -o build/azure.zip
#   terraform apply -var name=shop -var package_path=build/azure.zip ...
#
# Not applied in cloudq's tests: the azurerm provider cannot be installed there (fmt + parsing only).

terraform {
  required_version = ">= 1.5"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 4.9, < 5.0"
    }
  }
}

provider "azurerm" {
  features {}
  subscription_id = var.subscription_id
}

resource "azurerm_resource_group" "this" {
  name     = "${var.name}-cloudq"
  location = var.location
}

module "queues" {
  source = "../../../azure-queue"

  resource_group_name              = azurerm_resource_group.this.name
  location                         = var.location
  namespace_name                   = "${var.name}-bus"
  prefix                           = var.queue_prefix
  queues                           = var.queues
  claim_check_storage_account_name = var.claim_check_storage_account_name
}

module "worker" {
  source = "../../../azure-function-worker"

  resource_group_name       = azurerm_resource_group.this.name
  location                  = var.location
  name                      = "${var.name}-worker"
  storage_account_name      = var.host_storage_account_name
  package_path              = var.package_path
  app                       = var.app
  broker_url                = module.queues.broker_url
  claim_check_url           = module.queues.claim_check_url
  claim_check_container_id  = module.queues.claim_check_container_id
  servicebus_namespace_fqdn = module.queues.namespace_fqdn
  queues                    = module.queues.queues
  schedules                 = var.schedules
}
