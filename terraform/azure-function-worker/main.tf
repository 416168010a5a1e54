locals {
  app_settings = merge(
    {
      CLOUDQ_APP        = var.app
      CLOUDQ_BROKER_URL = var.broker_url
      # The identity may not create queues: Terraform made them.
      CLOUDQ_CREATE_MISSING_QUEUES = "false"
      # deploy/azure-functions/function_app.py makes one Service Bus trigger per queue.
      CLOUDQ_QUEUES                              = join(",", [for q in var.queues : q.name])
      CLOUDQ_SERVICEBUS__fullyQualifiedNamespace = var.servicebus_namespace_fqdn
      SCM_DO_BUILD_DURING_DEPLOYMENT             = "false" # packages are in the zip already
      ENABLE_ORYX_BUILD                          = "false"
    },
    var.result_backend == null ? {} : { CLOUDQ_RESULT_BACKEND = var.result_backend },
    var.claim_check_url == null ? {} : { CLOUDQ_CLAIM_CHECK_URL = var.claim_check_url },
    var.environment,
  )
  principal_id = azurerm_linux_function_app.this.identity[0].principal_id
}

resource "azurerm_storage_account" "host" {
  name                            = var.storage_account_name
  resource_group_name             = var.resource_group_name
  location                        = var.location
  account_tier                    = "Standard"
  account_replication_type        = "LRS"
  min_tls_version                 = "TLS1_2"
  allow_nested_items_to_be_public = false
  tags                            = var.tags
}

resource "azurerm_service_plan" "this" {
  name                = "${var.name}-plan"
  resource_group_name = var.resource_group_name
  location            = var.location
  os_type             = "Linux"
  sku_name            = var.sku_name
  tags                = var.tags
}

resource "azurerm_linux_function_app" "this" {
  name                        = var.name
  resource_group_name         = var.resource_group_name
  location                    = var.location
  service_plan_id             = azurerm_service_plan.this.id
  storage_account_name        = azurerm_storage_account.host.name
  storage_account_access_key  = azurerm_storage_account.host.primary_access_key
  functions_extension_version = "~4"
  https_only                  = true
  zip_deploy_file             = var.package_path
  app_settings                = local.app_settings
  tags                        = var.tags

  identity {
    type = "SystemAssigned"
  }

  site_config {
    application_stack {
      python_version = var.python_version
    }
  }
}

# Narrowest data roles, each scoped to one queue or container, never the namespace or account.
# Receiver covers receive, complete, abandon and dead-lettering into the queue's subqueue.
resource "azurerm_role_assignment" "receive" {
  for_each = var.queues

  scope                = each.value.id
  role_definition_name = "Azure Service Bus Data Receiver"
  principal_id         = local.principal_id
}

# Sender: retries are sent back to the task's queue; plus the other queues tasks send to.
resource "azurerm_role_assignment" "send" {
  for_each = merge(
    { for name, q in var.queues : name => q.id },
    { for id in var.send_queue_ids : id => id },
  )

  scope                = each.value
  role_definition_name = "Azure Service Bus Data Sender"
  principal_id         = local.principal_id
}

resource "azurerm_role_assignment" "claim_checks" {
  count = var.claim_check_container_id == null ? 0 : 1

  scope                = var.claim_check_container_id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = local.principal_id
}

resource "azurerm_role_assignment" "results" {
  count = var.results_table_id == null ? 0 : 1

  scope                = var.results_table_id
  role_definition_name = "Storage Table Data Contributor"
  principal_id         = local.principal_id
}
