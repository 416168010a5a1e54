output "function_app_name" {
  description = "The Function App's name."
  value       = azurerm_linux_function_app.this.name
}

output "function_app_id" {
  description = "The Function App's resource id."
  value       = azurerm_linux_function_app.this.id
}

output "principal_id" {
  description = "The managed identity the tasks run as."
  value       = local.principal_id
}

output "default_hostname" {
  description = "The Function App's host name."
  value       = azurerm_linux_function_app.this.default_hostname
}

output "schedule_workflow_ids" {
  description = "The schedules' Logic App workflows by name."
  value       = { for name, w in azurerm_logic_app_workflow.schedule : name => w.id }
}
