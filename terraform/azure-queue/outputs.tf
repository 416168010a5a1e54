output "queues" {
  description = "Per cloudq queue name: id, name, dead_letter_path, lock_duration, max_delivery_count. Pass it to azure-function-worker's queues."
  value = {
    for name, q in azurerm_servicebus_queue.this : name => {
      id                 = q.id
      name               = q.name
      dead_letter_path   = "${q.name}/$deadletterqueue"
      lock_duration      = q.lock_duration
      max_delivery_count = q.max_delivery_count
    }
  }
}

output "namespace_id" {
  description = "The namespace's resource id."
  value       = azurerm_servicebus_namespace.this.id
}

output "namespace_fqdn" {
  description = "Fully qualified namespace, for identity-based connections."
  value       = "${azurerm_servicebus_namespace.this.name}.servicebus.windows.net"
}

output "broker_url" {
  description = "The app's broker URL (CLOUDQ_BROKER_URL)."
  value       = var.prefix == "" ? "servicebus://${azurerm_servicebus_namespace.this.name}.servicebus.windows.net" : "servicebus://${azurerm_servicebus_namespace.this.name}.servicebus.windows.net?prefix=${var.prefix}"
}

output "claim_check_container_id" {
  description = "Resource id of the claim-check container (the scope of the worker's blob role), or null."
  value       = one(azurerm_storage_container.claim_checks[*].id)
}

output "claim_check_url" {
  description = "The app's claim_check_url (CLOUDQ_CLAIM_CHECK_URL), or null."
  value       = var.claim_check_storage_account_name == null ? null : "azblob://${var.claim_check_container}?account_url=https://${var.claim_check_storage_account_name}.blob.core.windows.net"
}
