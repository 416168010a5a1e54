resource "azurerm_servicebus_namespace" "this" {
  name                = var.namespace_name
  location            = var.location
  resource_group_name = var.resource_group_name
  sku                 = var.sku
  local_auth_enabled  = var.local_auth_enabled
  minimum_tls_version = "1.2"
  tags                = var.tags
}

# A Service Bus queue carries its own dead-letter subqueue (<queue>/$deadletterqueue): the
# broker moves a message there after max_delivery_count deliveries, cloudq's handler moves failed
# tasks there itself.
resource "azurerm_servicebus_queue" "this" {
  for_each = var.queues

  name                                 = "${var.prefix}${each.key}"
  namespace_id                         = azurerm_servicebus_namespace.this.id
  lock_duration                        = format("PT%dS", min(300, ceil(each.value.visibility_timeout_seconds)))
  max_delivery_count                   = each.value.max_receive_count
  dead_lettering_on_message_expiration = true
  default_message_ttl                  = var.default_message_ttl
  max_size_in_megabytes                = var.max_size_in_megabytes
  # cloudq's FIFO queues (names ending in .fifo) are session queues: a message group is a session.
  requires_session = endswith(each.key, ".fifo")
}

# --- optional claim-check storage ----------------------------------------------------------
resource "azurerm_storage_account" "claim_checks" {
  count = var.claim_check_storage_account_name == null ? 0 : 1

  name                            = var.claim_check_storage_account_name
  resource_group_name             = var.resource_group_name
  location                        = var.location
  account_tier                    = "Standard"
  account_replication_type        = "LRS"
  min_tls_version                 = "TLS1_2"
  allow_nested_items_to_be_public = false
  shared_access_key_enabled       = false
  tags                            = var.tags
}

resource "azurerm_storage_container" "claim_checks" {
  count = var.claim_check_storage_account_name == null ? 0 : 1

  name                  = var.claim_check_container
  storage_account_id    = azurerm_storage_account.claim_checks[0].id
  container_access_type = "private"
}

resource "azurerm_storage_management_policy" "claim_checks" {
  count = var.claim_check_storage_account_name == null ? 0 : 1

  storage_account_id = azurerm_storage_account.claim_checks[0].id

  rule {
    name    = "expire-cloudq-claim-checks"
    enabled = true
    filters {
      blob_types   = ["blockBlob"]
      prefix_match = ["${var.claim_check_container}/"]
    }
    actions {
      base_blob {
        delete_after_days_since_modification_greater_than = var.claim_check_expiration_days
      }
    }
  }
}
