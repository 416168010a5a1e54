"""The schedule parts of the Terraform modules read as HCL, against what ``cloudq beat --export``
writes: the azurerm provider is not in the mirror, so azure-function-worker's Logic Apps are
checked by shape (python-hcl2), never by ``terraform validate``."""

from __future__ import annotations

import base64
import json
import re
import uuid

import pytest

from cloudq import App
from cloudq.beat_export import export
from tests.deploy.test_terraform_hcl import COMPLETE, _expr, load

ATTRIBUTE = re.compile(r"(\w+)\s*=")
AWS_OPTIONAL = {"description", "enabled", "flexible_time_window_minutes", "message_group_id"}


def exported(fmt: str) -> dict[str, dict[str, object]]:
    app = App("s", broker=f"memory://{uuid.uuid4().hex}")
    app.task(name="report")(lambda: None)
    app.conf.beat_schedule = {"nightly": {"task": "report", "schedule": "0 3 * * *"}}
    return export(app, fmt)


@pytest.mark.parametrize(
    ("module", "fmt", "optional"),
    [
        ("aws-schedule", "eventbridge", AWS_OPTIONAL),
        ("gcp-function-worker", "cloud-scheduler", {"attributes"}),
        ("azure-function-worker", "logic-app", set()),
    ],
)  # fmt: skip
def test_each_schedules_variable_takes_its_export_as_written(
    module: str, fmt: str, optional: set[str]
) -> None:
    declared = set(ATTRIBUTE.findall(load(module).variables["schedules"]["type"]))
    written = set(exported(fmt)["nightly"])
    assert written <= declared, (module, written - declared)
    assert declared - written <= optional, (module, declared - written)


def test_azure_example_passes_the_schedules_on() -> None:
    example = load(COMPLETE["azure"])
    assert _expr(example.calls["worker"]["schedules"]) == "var.schedules"


def test_logic_app_trigger_action_and_role_are_wired_per_schedule() -> None:
    worker = load("azure-function-worker")
    [workflow] = worker.blocks("azurerm_logic_app_workflow")
    assert _expr(workflow["for_each"]) == "var.schedules"
    assert _unquoted(workflow["identity"][0]["type"]) == "SystemAssigned"
    [trigger] = worker.blocks("azurerm_logic_app_trigger_custom")
    trigger_body = _expr(trigger["body"])
    assert 'type = "Recurrence"' in trigger_body.replace('"type"', "type")
    assert "jsondecode(each.value.recurrence)" in trigger_body
    [action] = worker.blocks("azurerm_logic_app_action_custom")
    body = _expr(action["body"])
    assert (
        "https://${var.servicebus_namespace_fqdn}/${var.queues[each.value.queue].name}/messages"
        in body
    )
    assert "MessageId = each.value.message_id" in body
    assert "@base64ToString('${base64encode(each.value.input)}')" in body
    assert "ManagedServiceIdentity" in body and "https://servicebus.azure.net" in body
    role = worker.resources["azurerm_role_assignment"]["schedule_send"]
    assert _unquoted(role["role_definition_name"]) == "Azure Service Bus Data Sender"
    assert _expr(role["scope"]) == "var.queues[each.value.queue].id"
    assert "azurerm_logic_app_workflow.schedule[each.key].identity[0].principal_id" in _expr(
        role["principal_id"]
    )


def test_what_the_logic_app_sends_is_the_exported_envelope() -> None:
    """The module's body expression, filled in as Terraform would and read as Logic Apps would:
    the exported envelope, byte for byte."""
    entry = exported("logic-app")["nightly"]
    body = _expr(load("azure-function-worker").blocks("azurerm_logic_app_action_custom")[0]["body"])
    placeholder = "${base64encode(each.value.input)}"
    filled = body.replace(placeholder, base64.b64encode(str(entry["input"]).encode()).decode())
    encoded = re.search(r'body = "@base64ToString\(\'([A-Za-z0-9+/=]+)\'\)"', filled)
    assert encoded is not None, body
    assert base64.b64decode(encoded.group(1)).decode() == entry["input"]
    assert json.loads(str(entry["input"]))["headers"]["cloudq-id-per-tick"] == "message-id"


def _unquoted(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    return text.strip('"')
