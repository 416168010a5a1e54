"""``terraform export``: the app's queues as Terraform variables, and the drift check."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cloudq import App
from cloudq.cli import _Context
from cloudq.deploy.cli import terraform
from cloudq.deploy.tfvars import app_queues, export_tfvars, render_tfvars, tfvars_drift

APP = """
from cloudq import App

app = App("tf", broker="sqs://?prefix=shop-", queue_lease_seconds=45.5, queue_max_receive_count=7,
          task_routes={"mail.*": "mail"})


@app.task(name="orders.place", queue="orders.fifo", time_limit=120)
def place(order_id: int) -> None: ...


@app.task(name="mail.send")
def send(to: str) -> None: ...
"""


def make_app(**settings: object) -> App:
    app = App("tf", broker="sqs://?prefix=shop-", queue_lease_seconds=45.5,
              queue_max_receive_count=7, task_routes={"mail.*": "mail"}, **settings)  # fmt: skip
    app.task(name="orders.place", queue="orders.fifo", time_limit=120)(lambda order_id: None)
    app.task(name="mail.send")(lambda to: None)
    return app


def test_export_holds_every_queue_with_the_apps_settings() -> None:
    app = make_app()
    assert app_queues(app) == ["default", "mail", "orders.fifo"]
    data = export_tfvars(app, "shop.tasks")
    assert data == {
        "app": "shop.tasks",
        "queue_prefix": "shop-",
        "queues": {
            name: {
                "visibility_timeout_seconds": 46,  # SQS takes whole seconds, rounded up
                "max_receive_count": 7,
                "delay_seconds": 0,
                "fifo": name.endswith(".fifo"),
            }
            for name in ("default", "mail", "orders.fifo")
        },
        # The default limit (300 s) of mail.send is the longest, plus the handler's margin.
        "function_timeout_seconds": 302,
    }
    text = render_tfvars(data)
    assert text.endswith("\n") and json.loads(text) == data
    assert render_tfvars(export_tfvars(make_app(), "shop.tasks")) == text  # stable


def test_function_timeout_is_capped_at_lambdas_15_minutes(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(task_time_limit=3600)
    assert export_tfvars(app, "t")["function_timeout_seconds"] == 900
    assert "does not fit Lambda's 900s" in caplog.text


def test_prefix_from_the_environment_when_the_url_has_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLOUDQ_SQS_PREFIX", "env-")
    assert export_tfvars(App("t", broker="sqs://"), "t")["queue_prefix"] == "env-"


def test_drift_names_each_difference_by_path() -> None:
    expected = export_tfvars(make_app(), "t")
    actual = json.loads(render_tfvars(expected))
    assert tfvars_drift(expected, actual) == []
    actual["queues"]["mail"]["max_receive_count"] = 3
    actual["queues"]["old"] = actual["queues"].pop("default")
    actual["queues"]["orders.fifo"]["visibility_timeout_seconds"] = 46.0
    assert tfvars_drift(expected, actual) == [
        "queues.default: in the app, not in the file",
        "queues.mail.max_receive_count: the file has 3, the app 7",
        "queues.old: in the file, not in the app",
        "queues.orders.fifo.visibility_timeout_seconds: the file has 46.0, the app 46",
    ]


@pytest.fixture
def app_ref(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"tfapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return name


def test_cli_writes_then_checks_then_finds_drift(app_ref: str, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cloudq.auto.tfvars.json"

    def export(*args: str) -> Result:
        return runner.invoke(terraform, ["export", *args, "-o", str(out)], obj=_Context(app_ref))

    written = export()
    assert written.exit_code == 0, written.output
    assert json.loads(out.read_text())["queues"]["orders.fifo"]["fifo"] is True
    check = export("--check")
    assert check.exit_code == 0 and "matches the app" in check.output
    # The code moves on (a new queue, another max receive count); the file stays behind.
    source = tmp_path / f"{app_ref}.py"
    source.write_text(
        source.read_text()
        .replace('"mail.*": "mail"', '"mail.*": "mail", "pdf.*": "reports"')
        .replace("queue_max_receive_count=7", "queue_max_receive_count=5")
    )
    sys.modules.pop(app_ref, None)
    before = out.read_text()
    drift = export("--check")
    assert drift.exit_code == 1
    assert "queues.default.max_receive_count: the file has 7, the app 5" in drift.output
    assert "queues.reports: in the app, not in the file" in drift.output
    assert "has drifted from the app (4 difference(s))" in drift.output
    assert out.read_text() == before  # --check writes nothing
    assert export().exit_code == 0 and export("--check").exit_code == 0
    missing = runner.invoke(
        terraform, ["export", "--check", "-o", str(tmp_path / "none.json")], obj=_Context(app_ref)
    )
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_cli_prints_to_standard_output(app_ref: str) -> None:
    result = CliRunner().invoke(terraform, ["export", "-o", "-"], obj=_Context(app_ref))
    assert result.exit_code == 0
    assert json.loads(result.output)["app"] == app_ref
