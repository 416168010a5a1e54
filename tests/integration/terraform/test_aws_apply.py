"""The AWS modules applied for real against moto server, and the packaged worker run on them.

One pass, as a user would go: ``terraform export`` the app's queues, ``deploy package`` the
Lambda zip, ``terraform apply`` the complete example (queue + DLQ, results table, claim-check
bucket, worker function with its event source mapping, a schedule), then send tasks into the
module-made queue and run the *packaged* handler on them through ``lambda-local`` in an
interpreter that sees only the zip and the runtime's boto3, with the environment the module gave
the function. A poison task must end in the module-made DLQ. Then ``terraform destroy``.

One queue and its DLQ only: the provider waits ~25 s on each aws_sqs_queue against moto.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest

from cloudq import State
from cloudq.testing import wait_for
from tests.integration.terraform.conftest import Terraform, copy_modules

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

EXAMPLE = Path("aws-lambda-worker/examples/complete")
# The Lambda runtime's own packages: what the zip leaves out, given to the function here.
RUNTIME_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")

APP_SOURCE = '''
"""A shop app configured from the environment, as a deployed function's is."""
from cloudq import App

app = App("tfshop", task_time_limit=8, queue_lease_seconds=20, queue_max_receive_count=4)


@app.task(name="tfshop.double")
def double(x: int) -> int:
    return 2 * x


@app.task(name="tfshop.length")
def length(text: str) -> int:
    return len(text)


@app.task(name="tfshop.poison", max_retries=0)
def poison(reason: str) -> None:
    raise ValueError(reason)
'''

MOTO_OVERRIDE = """
provider "aws" {{
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  skip_region_validation      = true
  s3_use_path_style           = true

  endpoints {{
{endpoints}
  }}
}}
"""
SERVICES = ("sqs", "iam", "lambda", "dynamodb", "s3", "logs", "kms", "scheduler", "sts")


def aws(service: str) -> Any:
    """A boto3 client for moto (sqs_env points the environment at it)."""
    return boto3.client(service, region_name="us-east-1")


def cloudq_cli(
    *args: str, cwd: Path, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    """The cloudq command with the deploy commands (as the entry points will register them)."""
    done = subprocess.run(
        [sys.executable, "-m", "cloudq.deploy.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"cloudq {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def runtime_dir(path: Path) -> Path:
    """What Lambda's Python runtime provides (boto3 and its needs), as symlinks."""
    path.mkdir()
    for name in RUNTIME_MODULES:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, f"{name} must be installed for this test"
        source = Path(spec.origin)
        source = source.parent if source.name == "__init__.py" else source
        (path / source.name).symlink_to(source)
    return path


def load_module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_apply_send_run_dead_letter_destroy(
    terraform: Terraform,
    sqs_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    record_property: Any,
) -> None:
    name = f"tf{uuid.uuid4().hex[:8]}"
    prefix = f"{name}-"
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "tfshop_tasks.py").write_text(textwrap.dedent(APP_SOURCE))
    env = {**os.environ, "CLOUDQ_BROKER_URL": f"sqs://?prefix={prefix}"}
    env.pop("CLOUDQ_APP", None)

    # 1. The app's queues as Terraform variables, then the Lambda package.
    modules = copy_modules(tmp_path)
    example = modules / EXAMPLE
    tfvars = example / "cloudq.auto.tfvars.json"
    cloudq_cli("-A", "tfshop_tasks", "terraform", "export", "-o", str(tfvars), cwd=app_dir, env=env)
    exported = json.loads(tfvars.read_text())
    assert exported["queues"] == {
        "default": {
            "visibility_timeout_seconds": 20,
            "max_receive_count": 4,
            "delay_seconds": 0,
            "fifo": False,
        }
    }
    assert exported["function_timeout_seconds"] == 10
    cloudq_cli("-A", "tfshop_tasks", "terraform", "export", "--check", "-o", str(tfvars),
               cwd=app_dir, env=env)  # fmt: skip
    artifact = tmp_path / "build" / "lambda.zip"
    packaged = cloudq_cli(
        "-A", "tfshop_tasks", "deploy", "package", "--target", "lambda", "-o", str(artifact),
        cwd=app_dir, env=env,
    )  # fmt: skip
    assert "left to the runtime: boto3" in packaged.stdout
    zip_bytes = artifact.stat().st_size
    with zipfile.ZipFile(artifact) as archive:
        unzipped = sum(i.file_size for i in archive.infolist())
        archive.extractall(tmp_path / "task")
    record_property("artifact_zip_bytes", zip_bytes)
    record_property("artifact_unzipped_bytes", unzipped)

    # 2. terraform apply of the complete example against moto.
    endpoints = "\n".join(f'    {s:<9} = "{sqs_env}"' for s in SERVICES)
    (example / "moto_override.tf").write_text(MOTO_OVERRIDE.format(endpoints=endpoints))
    schedule_input = json.dumps({"task": "tfshop.double", "args": [1]})
    (example / "test.auto.tfvars.json").write_text(
        json.dumps(
            {
                "name": name,
                "package_path": str(artifact),
                "claim_check_bucket_name": f"{name}-claims",
                "batch_size": 5,
                "maximum_concurrency": 2,
                "schedules": {
                    f"{name}-tick": {
                        "schedule_expression": "rate(5 minutes)",
                        "queue": "default",
                        "input": schedule_input,
                    }
                },
            }
        )
    )
    terraform(example, "init", "-no-color")
    applied = False
    try:
        terraform(example, "apply", "-auto-approve", "-no-color", timeout=300)
        applied = True
        outputs = {
            k: v["value"]
            for k, v in json.loads(terraform(example, "output", "-json").stdout).items()
        }
        queue = outputs["queues"]["default"]
        check_resources(name, outputs, artifact)

        # 3. Tasks into the module-made queue; the packaged handler runs them.
        for key, value in {
            "CLOUDQ_BROKER_URL": outputs["broker_url"],
            "CLOUDQ_RESULT_BACKEND": outputs["result_backend"],
            "CLOUDQ_CLAIM_CHECK_URL": outputs["claim_check_url"],
            "CLOUDQ_CREATE_MISSING_QUEUES": "false",
        }.items():
            monkeypatch.setenv(key, value)
        producer = load_module(f"tfshop_producer_{name}", app_dir / "tfshop_tasks.py").app
        doubled = producer.tasks["tfshop.double"].delay(21)
        measured = producer.tasks["tfshop.length"].delay("x" * 300_000)  # over 256 KiB: to S3
        poisoned = producer.tasks["tfshop.poison"].delay("boom")

        function = aws("lambda").get_function_configuration(FunctionName=outputs["function_name"])
        mapping = event_source_mapping(queue["arn"])
        module, _, attribute = function["Handler"].rpartition(".")
        run_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": f"{tmp_path / 'task'}{os.pathsep}{runtime_dir(tmp_path / 'runtime')}",
            "PYTHONDONTWRITEBYTECODE": "1",
            "AWS_ENDPOINT_URL": sqs_env,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.environ["AWS_CONFIG_FILE"],
            "AWS_SHARED_CREDENTIALS_FILE": os.environ["AWS_SHARED_CREDENTIALS_FILE"],
            **function["Environment"]["Variables"],
        }
        neutral = tmp_path / "cwd"
        neutral.mkdir()
        worker = subprocess.Popen(
            [
                sys.executable, "-S", "-m", "cloudq.cli", "lambda-local", "-Q", "default",
                "--handler", f"{module}:{attribute}",
                "--timeout", str(function["Timeout"]),
                "--batch-size", str(mapping["BatchSize"]),
            ],
            cwd=neutral,
            env=run_env,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            assert doubled.get(timeout=30) == 42
            assert measured.get(timeout=30) == 300_000
            wait_for(poisoned.ready, timeout=30, message="the poison task's result")
            assert poisoned.state == State.FAILURE
            sqs = aws("sqs")
            dead = sqs.receive_message(
                QueueUrl=queue["dlq_url"], WaitTimeSeconds=5, MessageAttributeNames=["All"]
            )["Messages"]
            assert len(dead) == 1
            reason = dead[0]["MessageAttributes"]["cloudq-dead-letter-reason"]["StringValue"]
            assert "ValueError: boom" in reason
            assert poisoned.id in dead[0]["Body"]
            wait_for(
                lambda: (
                    int(
                        sqs.get_queue_attributes(
                            QueueUrl=queue["url"], AttributeNames=["ApproximateNumberOfMessages"]
                        )["Attributes"]["ApproximateNumberOfMessages"]
                    )
                    == 0
                ),
                timeout=10,
                message="the queue drained",
            )
        finally:
            worker.send_signal(signal.SIGTERM)
            assert worker.stderr is not None
            log = worker.stderr.read()
            code = worker.wait(timeout=30)
        assert code == 0, log
        assert "3 record(s), 0 failed" in log, log

        # 4. A second plan finds nothing to do (but moto's spacing of RedrivePolicy).
        assert_no_drift(terraform, example)
    finally:
        if applied or (example / "terraform.tfstate").exists():
            terraform(example, "destroy", "-auto-approve", "-no-color", timeout=300)
    assert not aws("sqs").list_queues(QueueNamePrefix=prefix).get("QueueUrls")
    names = [f["FunctionName"] for f in aws("lambda").list_functions()["Functions"]]
    assert f"{name}-worker" not in names
    for step in ("apply", "destroy"):
        record_property(f"terraform_{step}_seconds", round(terraform.timings[step], 1))
    print(
        f"\nterraform apply {terraform.timings['apply']:.1f}s, destroy "
        f"{terraform.timings['destroy']:.1f}s; lambda zip {zip_bytes / 2**20:.2f} MiB "
        f"({unzipped / 2**20:.2f} MiB unzipped)"
    )


def event_source_mapping(queue_arn: str) -> dict[str, Any]:
    """The one mapping reading the queue (moto does not filter the list by function name)."""
    mappings = aws("lambda").list_event_source_mappings()["EventSourceMappings"]
    [mapping] = [m for m in mappings if m["EventSourceArn"] == queue_arn]
    return mapping


def check_resources(name: str, outputs: dict[str, Any], artifact: Path) -> None:
    """What the modules made is what the app and the package say, with least privilege."""
    queue = outputs["queues"]["default"]
    sqs = aws("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=queue["url"], AttributeNames=["All"])[
        "Attributes"
    ]
    assert attributes["VisibilityTimeout"] == "60"  # 6 x the 10 s function timeout
    assert attributes["KmsMasterKeyId"] == "alias/aws/sqs"
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == queue["dlq_arn"]
    assert int(redrive["maxReceiveCount"]) == 4
    assert queue["dlq_name"] == f"{name}-default-dlq"

    function = aws("lambda").get_function_configuration(FunctionName=outputs["function_name"])
    assert (function["Handler"], function["Runtime"], function["Timeout"]) == (
        "handler.handler",
        "python3.11",
        10,
    )
    digest = base64.b64encode(hashlib.sha256(artifact.read_bytes()).digest()).decode()
    assert function["CodeSha256"] == digest
    assert function["Environment"]["Variables"]["CLOUDQ_APP"] == "tfshop_tasks"
    mapping = event_source_mapping(queue["arn"])
    assert mapping["FunctionArn"] == function["FunctionArn"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]

    table = outputs["result_backend"].removeprefix("dynamodb://")
    ttl = aws("dynamodb").describe_time_to_live(TableName=table)
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"
    table_arn = aws("dynamodb").describe_table(TableName=table)["Table"]["TableArn"]

    groups = aws("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")
    [group] = groups["logGroups"]
    assert group["retentionInDays"] == 14

    iam = aws("iam")
    policy = iam.get_role_policy(RoleName=outputs["role_name"], PolicyName="cloudq-worker")
    resources = {
        s["Sid"]: sorted([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
        for s in policy["PolicyDocument"]["Statement"]
    }
    bucket = outputs["claim_check_url"].removeprefix("s3://").split("/")[0]
    assert resources == {
        "ConsumeQueues": [queue["arn"]],
        "DeadLetter": [queue["dlq_arn"]],
        "Results": [table_arn],
        "ClaimChecks": [f"arn:aws:s3:::{bucket}/cloudq/*"],
        "Logs": [group["arn"].removesuffix(":*") + ":*"],
    }
    for statement in policy["PolicyDocument"]["Statement"]:
        actions = statement["Action"]
        assert not any("*" in a for a in ([actions] if isinstance(actions, str) else actions))

    schedule_role = f"{name}-scheduler"
    schedule_policy = iam.get_role_policy(RoleName=schedule_role, PolicyName="cloudq-schedule")
    [send] = schedule_policy["PolicyDocument"]["Statement"]
    assert send["Resource"] == queue["arn"] and send["Action"] == "sqs:SendMessage"
    schedule = aws("scheduler").get_schedule(Name=f"{name}-tick", GroupName=name)
    assert schedule["Target"]["Arn"] == queue["arn"]


def assert_no_drift(terraform: Terraform, example: Path) -> None:
    terraform(example, "plan", "-no-color", "-out=again.tfplan")
    plan = json.loads(terraform(example, "show", "-json", "again.tfplan").stdout)
    for change in plan.get("resource_changes", []):
        actions = change["change"]["actions"]
        if actions == ["no-op"] or actions == ["read"]:
            continue
        before, after = change["change"]["before"], change["change"]["after"]
        differing = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        # moto spaces the RedrivePolicy JSON differently from AWS: same document, new text.
        assert actions == ["update"] and differing == {"redrive_policy"}, change
        assert json.loads(before["redrive_policy"]) == json.loads(after["redrive_policy"])
