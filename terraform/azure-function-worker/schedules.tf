# Periodic tasks without a beat process: one Logic App (Consumption) per entry of
# `cloudq beat --export logic-app`, whose recurrence POSTs the entry's envelope to the target
# queue through Service Bus's REST API, with the workflow's own identity. The MessageId is
# `beat-<name>-<scheduled time>`: the receiving side keeps it as the task id, one per tick.
resource "azurerm_logic_app_workflow" "schedule" {
  for_each = var.schedules

  name                = "${var.name}-${each.key}"
  location            = var.location
  resource_group_name = var.resource_group_name
  tags                = var.tags

  identity {
    type = "SystemAssigned"
  }

  lifecycle {
    precondition {
      condition     = contains(keys(var.queues), each.value.queue)
      error_message = "Schedule ${each.key} names queue ${each.value.queue}, which is not in queues."
    }
  }
}

resource "azurerm_logic_app_trigger_custom" "schedule" {
  for_each = var.schedules

  name         = "tick"
  logic_app_id = azurerm_logic_app_workflow.schedule[each.key].id
  body = jsonencode({
    type       = "Recurrence"
    recurrence = jsondecode(each.value.recurrence)
  })
}

resource "azurerm_logic_app_action_custom" "schedule" {
  for_each = var.schedules

  name         = "send"
  logic_app_id = azurerm_logic_app_workflow.schedule[each.key].id
  body = jsonencode({
    type     = "Http"
    runAfter = {}
    inputs = {
      method = "POST"
      uri    = "https://${var.servicebus_namespace_fqdn}/${var.queues[each.value.queue].name}/messages"
      headers = {
        "Content-Type"   = "application/json"
        BrokerProperties = jsonencode({ MessageId = each.value.message_id })
      }
      # base64: Logic Apps would evaluate any "@{...}" inside a literal body.
      body = "@base64ToString('${base64encode(each.value.input)}')"
      authentication = {
        type     = "ManagedServiceIdentity"
        audience = "https://servicebus.azure.net"
      }
    }
  })
}

# Each workflow may send to its own target queue, and nothing else.
resource "azurerm_role_assignment" "schedule_send" {
  for_each = var.schedules

  scope                = var.queues[each.value.queue].id
  role_definition_name = "Azure Service Bus Data Sender"
  principal_id         = azurerm_logic_app_workflow.schedule[each.key].identity[0].principal_id
}
