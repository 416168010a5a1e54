"""The Terraform modules read as HCL (python-hcl2): what can be checked without a provider.

The google and azurerm providers cannot be installed here, so their modules are never applied
or validated by terraform; these checks cover every module alike: inputs declared and used,
module calls matching the callee's inputs and outputs, the DLQ and trigger wired to the queue
module's outputs, IAM no wider than the module's own resources, the entry files' names.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from cloudq import App
from cloudq.deploy.tfvars import export_tfvars
from tests.tools import missing_tool

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
MODULES = sorted(
    [
        "aws-queue",
        "aws-lambda-worker",
        "aws-results-table",
        "aws-schedule",
        "gcp-queue",
        "gcp-function-worker",
        "azure-queue",
        "azure-function-worker",
    ]
)
EXAMPLES = sorted(str(p.parent.relative_to(TERRAFORM)) for p in TERRAFORM.glob("*/examples/*/*.tf"))
COMPLETE = {
    "aws": "aws-lambda-worker/examples/complete",
    "gcp": "gcp-function-worker/examples/complete",
    "azure": "azure-function-worker/examples/complete",
}
_META = {"__is_block__", "__comments__", "__inline_comments__", "__start_line__", "__end_line__"}
_VAR = re.compile(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)")
_LOCAL = re.compile(r"\blocal\.([A-Za-z_][A-Za-z0-9_-]*)")
_MODULE_OUTPUT = re.compile(r"\bmodule\.([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z_][A-Za-z0-9_-]*)")


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def _clean(value: Any) -> Any:
    """python-hcl2's output without its quoting of names and its bookkeeping keys."""
    if isinstance(value, dict):
        return {_unquote(k): _clean(v) for k, v in value.items() if k not in _META}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _strings(value: Any) -> list[str]:
    """Every name and value, but descriptions: prose that may mention ``var.x``."""
    if isinstance(value, dict):
        return [s for k, v in value.items() if k != "description" for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


@dataclass
class Module:
    path: Path
    variables: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    resources: dict[str, dict[str, dict[str, Any]]]
    data: dict[str, dict[str, dict[str, Any]]]
    calls: dict[str, dict[str, Any]]
    locals: dict[str, Any]
    strings: list[str]

    def refs(self, pattern: re.Pattern[str]) -> set[Any]:
        found: set[Any] = set()
        for text in self.strings:
            for match in pattern.finditer(text):
                found.add(match.group(1) if pattern.groups == 1 else match.groups())
        return found

    def blocks(self, type_: str) -> list[dict[str, Any]]:
        return list(self.resources.get(type_, {}).values())


@cache
def load(relative: str) -> Module:
    try:
        import hcl2
    except ImportError:
        missing_tool("python-hcl2 is not installed (a dev dependency): pip install python-hcl2")
    path = TERRAFORM / relative
    module = Module(path, {}, {}, {}, {}, {}, {}, [])
    for tf in sorted(path.glob("*.tf")):
        with tf.open() as handle:
            parsed = _clean(hcl2.load(handle))
        for item in parsed.get("variable", []):
            module.variables.update(item)
        for item in parsed.get("output", []):
            module.outputs.update(item)
        for item in parsed.get("module", []):
            module.calls.update(item)
        for item in parsed.get("locals", []):
            module.locals.update(item)
        for kind, target in (("resource", module.resources), ("data", module.data)):
            for item in parsed.get(kind, []):
                for type_, named in item.items():
                    target.setdefault(type_, {}).update(named)
        module.strings.extend(_strings(parsed))
    assert module.strings, f"no .tf files in {path}"
    return module


def _expr(value: Any) -> str:
    """The expression text of an attribute: ``${var.x}`` -> ``var.x``."""
    text = value[0] if isinstance(value, list) and len(value) == 1 else value
    assert isinstance(text, str), value
    return text[2:-1] if text.startswith("${") and text.endswith("}") else _unquote(text)


# --- every module and root ---------------------------------------------------------------------
@pytest.mark.parametrize("name", MODULES)
def test_module_has_its_files_and_documents_every_input_and_output(name: str) -> None:
    path = TERRAFORM / name
    for required in ("variables.tf", "outputs.tf", "versions.tf", "README.md"):
        assert (path / required).is_file(), f"{name} lacks {required}"
    assert list(path.glob("examples/*/*.tf")), f"{name} has no example root config"
    module = load(name)
    readme = (path / "README.md").read_text()
    for kind, items in (("input", module.variables), ("output", module.outputs)):
        for item, body in items.items():
            assert body.get("description"), f"{name}: {kind} {item} has no description"
            assert f"`{item}`" in readme, f"{name}/README.md does not list the {kind} `{item}`"


@pytest.mark.parametrize("relative", MODULES + EXAMPLES)
def test_every_variable_used_is_declared_and_every_declared_one_used(relative: str) -> None:
    module = load(relative)
    used, declared = module.refs(_VAR), set(module.variables)
    assert used <= declared, f"{relative}: undeclared variables {sorted(used - declared)}"
    assert declared <= used, f"{relative}: unused variables {sorted(declared - used)}"
    defined = set(module.locals)
    assert module.refs(_LOCAL) <= defined, f"{relative}: undefined locals"


@pytest.mark.parametrize("relative", EXAMPLES + MODULES)
def test_module_calls_pass_declared_inputs_and_read_existing_outputs(relative: str) -> None:
    module = load(relative)
    meta = {"source", "count", "for_each", "depends_on", "providers", "version"}
    for call, body in module.calls.items():
        callee_path = (module.path / _unquote(body["source"])).resolve()
        callee = load(str(callee_path.relative_to(TERRAFORM)))
        given = set(body) - meta
        assert given <= set(callee.variables), f"{relative}: {call} gets unknown inputs"
        required = {n for n, v in callee.variables.items() if "default" not in v}
        assert required <= given, f"{relative}: {call} misses {sorted(required - given)}"
    for call, output in module.refs(_MODULE_OUTPUT):
        callee_path = (module.path / _unquote(module.calls[call]["source"])).resolve()
        callee = load(str(callee_path.relative_to(TERRAFORM)))
        assert output in callee.outputs, f"{relative}: module.{call}.{output} does not exist"


def _export() -> dict[str, Any]:
    app = App("hcl", broker="sqs://?prefix=shop-")
    app.task(name="a", queue="high")(lambda: None)
    return export_tfvars(app, "tasks")


@pytest.mark.parametrize("cloud", sorted(COMPLETE))
def test_complete_examples_declare_what_terraform_export_writes(cloud: str) -> None:
    module = load(COMPLETE[cloud])
    exported = _export()
    assert set(exported) <= set(module.variables)
    queue_type = module.variables["queues"]["type"]
    attributes = set(re.findall(r"(\w+)\s*=", queue_type))
    assert attributes == set(exported["queues"]["high"]), queue_type
    assert _expr(module.calls["worker"]["app"]) == "var.app"


# --- wiring: the trigger and the DLQ come from the queue module's outputs ------------------------
def test_aws_worker_consumes_and_dead_letters_the_queue_modules_queues() -> None:
    example = load(COMPLETE["aws"])
    assert _expr(example.calls["worker"]["queues"]) == "module.queues.queues"
    queue = load("aws-queue")
    fields = _expr(queue.outputs["queues"]["value"])
    assert " arn = q.arn" in fields
    assert "dlq_arn = aws_sqs_queue.dlq[name].arn" in fields
    main = queue.resources["aws_sqs_queue"]["this"]
    assert "aws_sqs_queue.dlq[each.key].arn" in _expr(main["redrive_policy"])
    worker = load("aws-lambda-worker")
    [mapping] = worker.blocks("aws_lambda_event_source_mapping")
    assert _expr(mapping["for_each"]) == "var.queues"
    assert _expr(mapping["event_source_arn"]) == "each.value.arn"
    assert mapping["function_response_types"] == ['"ReportBatchItemFailures"']
    assert _expr(worker.locals["dlq_arns"]) == "distinct([for q in var.queues : q.dlq_arn])"


def test_gcp_push_trigger_and_dead_letter_topic_come_from_gcp_queue() -> None:
    example = load(COMPLETE["gcp"])
    assert _expr(example.calls["worker"]["queues"]) == "module.queues.queues"
    assert example.calls["queues"]["pull_subscriptions"] is False
    queue = load("gcp-queue")
    fields = _expr(queue.outputs["queues"]["value"])
    assert "topic_id = google_pubsub_topic.this[name].id" in fields
    assert "dlq_topic_id = google_pubsub_topic.dlq[name].id" in fields
    pull = queue.resources["google_pubsub_subscription"]["this"]
    policy = pull["dead_letter_policy"][0]
    assert _expr(policy["dead_letter_topic"]) == "google_pubsub_topic.dlq[each.key].id"
    worker = load("gcp-function-worker")
    [push] = worker.blocks("google_pubsub_subscription")
    assert _expr(push["for_each"]) == "var.queues"
    assert _expr(push["topic"]) == "each.value.topic_id"
    assert _expr(push["name"]) == "each.value.subscription_name"
    policy = push["dead_letter_policy"][0]
    assert _expr(policy["dead_letter_topic"]) == "each.value.dlq_topic_id"
    assert _expr(policy["max_delivery_attempts"]) == "each.value.max_delivery_attempts"
    endpoint = _expr(push["push_config"][0]["push_endpoint"])
    assert endpoint == "google_cloudfunctions2_function.this.service_config[0].uri"
    # The dead-letter service agent: publisher on the DLQ topics, subscriber on the sources.
    [publisher] = queue.blocks("google_pubsub_topic_iam_member")
    assert _expr(publisher["topic"]) == "google_pubsub_topic.dlq[each.key].name"
    subscribers = [*queue.blocks("google_pubsub_subscription_iam_member")]
    subscribers += worker.blocks("google_pubsub_subscription_iam_member")
    for grant in subscribers:
        assert _expr(grant["member"]) == "local.pubsub_agent"
        assert _unquote(grant["role"]) == "roles/pubsub.subscriber"
    for module in (queue, worker):
        assert "gcp-sa-pubsub.iam.gserviceaccount.com" in module.locals["pubsub_agent"]


def test_azure_triggers_and_roles_come_from_azure_queue() -> None:
    example = load(COMPLETE["azure"])
    worker_call = example.calls["worker"]
    assert _expr(worker_call["queues"]) == "module.queues.queues"
    assert _expr(worker_call["servicebus_namespace_fqdn"]) == "module.queues.namespace_fqdn"
    queue = load("azure-queue")
    fields = _expr(queue.outputs["queues"]["value"])
    assert "{id = q.id" in fields
    assert '"${q.name}/$deadletterqueue"' in fields
    [bus_queue] = queue.blocks("azurerm_servicebus_queue")
    assert _expr(bus_queue["max_delivery_count"]) == "each.value.max_receive_count"
    assert _expr(bus_queue["requires_session"]) == 'endswith(each.key, ".fifo")'
    worker = load("azure-function-worker")
    settings = _expr(worker.locals["app_settings"])
    assert 'CLOUDQ_QUEUES = join(",", [for q in var.queues : q.name])' in settings
    assert "CLOUDQ_SERVICEBUS__fullyQualifiedNamespace = var.servicebus_namespace_fqdn" in settings
    [receive] = [
        b
        for b in worker.blocks("azurerm_role_assignment")
        if "Receiver" in b["role_definition_name"]
    ]
    assert _expr(receive["for_each"]) == "var.queues"
    assert _expr(receive["scope"]) == "each.value.id"


# --- IAM no wider than the module's resources ---------------------------------------------------
AWS_RESOURCE_REFS = re.compile(
    r"^(\$\{)?(\[for q in var\.queues : q\.arn\]|local\.dlq_arns|var\.\w+|"
    r"\[for q in local\.target_queues : var\.queue_arns\[q\]\])\}?$|"
    r"^\"\$\{(aws_cloudwatch_log_group\.this\.arn|var\.claim_check_bucket_arn)\}[/:]"
)


@pytest.mark.parametrize("name", ["aws-lambda-worker", "aws-schedule"])
def test_aws_policies_name_only_the_modules_resources(name: str) -> None:
    module = load(name)
    statements = []
    for document in module.data["aws_iam_policy_document"].values():
        statements += document.get("statement", [])
        for dynamic in document.get("dynamic", []):
            statements += [c for block in dynamic.values() for c in block["content"]]
    granted = [s for s in statements if "resources" in s]
    assert granted, name
    for statement in granted:
        resources = statement["resources"]
        for resource in resources if isinstance(resources, list) else [resources]:
            assert resource != '"*"' and AWS_RESOURCE_REFS.search(resource), (name, resource)
        for action in statement["actions"]:
            assert "*" not in action, (name, action)


GCP_ROLES = {
    "roles/pubsub.publisher",
    "roles/pubsub.subscriber",
    "roles/storage.objectUser",
    "roles/run.invoker",
    "roles/datastore.user",
}


@pytest.mark.parametrize("name", ["gcp-queue", "gcp-function-worker"])
def test_gcp_grants_are_on_the_modules_resources(name: str) -> None:
    module = load(name)
    iam = {t: b for t, b in module.resources.items() if "_iam_" in t}
    assert iam, name
    for type_, blocks in iam.items():
        assert type_.endswith("_iam_member"), f"{type_}: authoritative IAM replaces others' grants"
        for label, block in blocks.items():
            assert _unquote(block["role"]) in GCP_ROLES, (type_, label, block["role"])
            if type_ == "google_project_iam_member":  # project-wide unless a condition narrows it
                assert "resource.name ==" in block["condition"][0]["expression"], label
                continue
            target = next(
                block[k] for k in ("topic", "subscription", "bucket", "service") if k in block
            )
            assert re.match(
                r"^\$\{(each\.value(\.\w+)?|var\.queues\[each\.value\]\.\w+|var\.claim_check_bucket|"
                r"google_\w+\.\w+(\[[\w.]+\])?\.[\w\[\].]+)\}$",
                target,
            ), (type_, label, target)


AZURE_ROLES = {
    "Azure Service Bus Data Receiver",
    "Azure Service Bus Data Sender",
    "Storage Blob Data Contributor",
    "Storage Table Data Contributor",
}


def test_azure_roles_are_data_roles_scoped_to_queues_and_containers() -> None:
    worker = load("azure-function-worker")
    assignments = worker.resources["azurerm_role_assignment"]
    assert len(assignments) == 5
    for label, block in assignments.items():
        assert _unquote(block["role_definition_name"]) in AZURE_ROLES, label
        scope = _expr(block["scope"])
        assert scope in {
            "each.value.id",
            "each.value",
            "var.claim_check_container_id",
            "var.results_table_id",
            "var.queues[each.value.queue].id",  # a schedule's workflow: its target queue
        }, (label, scope)
    send = _expr(assignments["send"]["for_each"])
    assert "var.queues" in send and "var.send_queue_ids" in send
    assert "namespace" not in " ".join(_strings(assignments))


# --- the entry files the modules name exist and match ------------------------------------------
def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def test_module_defaults_name_the_deploy_entry_files() -> None:
    handler = _unquote(load("aws-lambda-worker").variables["handler"]["default"])
    module, _, attribute = handler.rpartition(".")
    assert attribute in _functions(ROOT / "deploy" / "lambda" / f"{module}.py")
    entry = _unquote(load("gcp-function-worker").variables["entry_point"]["default"])
    assert entry in _functions(ROOT / "deploy" / "gcf" / "main.py")
    function_app = (ROOT / "deploy" / "azure-functions" / "function_app.py").read_text()
    assert 'os.environ.get("CLOUDQ_QUEUES"' in function_app
    assert 'connection="CLOUDQ_SERVICEBUS"' in function_app
