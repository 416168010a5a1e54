"""``deploy package``: reproducible zips of app + cloudq + one adapter, runnable where they land."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cloudq.cli import _Context
from cloudq.deploy.cli import deploy
from cloudq.deploy.markers import evaluate_marker, parse_requirement
from cloudq.deploy.package import (
    FILE_MODE,
    MANIFEST,
    ZIP_EPOCH,
    DeployError,
    build_package,
    plan_package,
    target_environment,
)

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3")

APP = """
from cloudq import App

app = App("pk")


@app.task(name="pk.double")
def double(x: int) -> int:
    return 2 * x
"""


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A one-module app in its own folder, importable under a name of its own."""
    name = f"pk_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / f"{name}.py").write_text(textwrap.dedent(APP))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.chdir(folder)
    yield folder, name
    sys.modules.pop(name, None)


def build(app_ref: str, out: Path, **options: object) -> bytes:
    plan = plan_package(app_ref, str(options.pop("target", "lambda")), **options)  # type: ignore[arg-type]
    result = build_package(plan, out)
    assert result.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    return out.read_bytes()


def test_same_input_gives_a_byte_identical_zip(app_dir: tuple[Path, str], tmp_path: Path) -> None:
    folder, name = app_dir
    first = build(name, tmp_path / "a.zip")
    source = folder / f"{name}.py"
    os.utime(source, (1_000_000, 1_000_000))  # other mtimes and modes: same bytes
    source.chmod(0o600)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / f"{name}.cpython-311.pyc").write_bytes(b"stale")
    assert build(name, tmp_path / "b.zip") == first
    source.write_text(source.read_text() + "\n# changed\n")
    assert build(name, tmp_path / "c.zip") != first


def test_entries_are_sorted_with_fixed_time_and_mode_and_no_bytecode(
    app_dir: tuple[Path, str], tmp_path: Path
) -> None:
    _, name = app_dir
    build(name, tmp_path / "a.zip")
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        infos = archive.infolist()
        manifest = json.loads(archive.read(MANIFEST))
    names = [i.filename for i in infos]
    assert names == sorted(names) and len(names) == len(set(names))
    assert {i.date_time for i in infos} == {ZIP_EPOCH}
    assert {i.external_attr >> 16 for i in infos} == {FILE_MODE}
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pth"))]
    # Install-time metadata would carry this machine's paths and tools.
    assert not [n for n in names if n.endswith(("/RECORD", "/direct_url.json", "/INSTALLER"))]
    assert manifest["target"] == "lambda" and manifest["app"] == name


def test_lambda_zip_holds_app_cloudq_and_sqs_adapter_but_no_runtime_sdk(
    app_dir: tuple[Path, str], tmp_path: Path
) -> None:
    _, name = app_dir
    plan = plan_package(name, "lambda")
    names = {f.arcname for f in plan.files}
    assert {"handler.py", f"{name}.py", "cloudq/__init__.py", "cloudq_sqs/broker.py"} <= names
    tops = {n.split("/")[0] for n in names}
    assert not tops & {"boto3", "botocore", "s3transfer", "urllib3", "dateutil", "jmespath"}
    assert plan.excluded == ["boto3"]  # what only boto3 needs is never reached
    assert set(plan.distributions) >= {
        "cloudqueue-tasks",
        "cloudqueue-tasks-sqs",
        "pydantic",
        "click",
    }
    assert "redis" not in plan.distributions  # no redis:// in this app
    entry_points = next(
        n for n in names if n.startswith("cloudqueue_tasks_sqs-") and "entry_points" in n
    )
    sqs = next(f for f in plan.files if f.arcname == entry_points).read().decode()
    assert "sqs = cloudq_sqs.broker:open_sqs_broker" in sqs  # found through metadata at run time
    assert (ROOT / "deploy" / "lambda" / "handler.py").read_bytes() == next(
        f for f in plan.files if f.arcname == "handler.py"
    ).read()


def test_result_backend_brings_its_distribution(app_dir: tuple[Path, str]) -> None:
    _, name = app_dir
    plan = plan_package(name, "lambda", urls=["sqs://", "redis://x:1/0", "memory://"])
    assert "redis" in plan.distributions


def test_packaged_handler_runs_on_the_zip_and_the_runtime_alone(
    app_dir: tuple[Path, str], tmp_path: Path
) -> None:
    """The zip under an interpreter without site-packages, plus boto3 as Lambda provides it."""
    _, name = app_dir
    build(name, tmp_path / "a.zip")
    task = tmp_path / "task"
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        archive.extractall(task)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    import importlib.util

    for module in RUNTIME:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin
        origin = Path(spec.origin)
        (
            runtime / (origin.parent.name if origin.name == "__init__.py" else origin.name)
        ).symlink_to(origin.parent if origin.name == "__init__.py" else origin)
    probe = textwrap.dedent(
        """
        import json, handler, cloudq, pydantic_core
        from cloudq.pool import load_app
        app = load_app(__import__("os").environ["CLOUDQ_APP"])
        print(json.dumps({
            "cloudq": cloudq.__file__,
            "pydantic_core": pydantic_core.__file__,
            "broker": type(app.broker).__name__,
            "handler": callable(handler.handler),
        }))
        """
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": f"{task}{os.pathsep}{runtime}",
            "CLOUDQ_APP": name,
            "CLOUDQ_BROKER_URL": "sqs://?region=us-east-1",
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["cloudq"].startswith(str(task)) and seen["pydantic_core"].startswith(str(task))
    assert seen == {**seen, "broker": "SQSBroker", "handler": True}


def _fake_distribution(
    site: Path, name: str, requires: list[str], tag: str, module: str | None = None
) -> None:
    """An installed distribution as pip leaves it: package, METADATA, WHEEL, RECORD."""
    module = module or name.replace("-", "_")
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(f"NAME = {name!r}\n")
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0"]
    metadata += [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(metadata) + "\n")
    (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n")
    (info / "INSTALLER").write_text("pip\n")
    records = [f"{module}/__init__.py,,", f"{info.name}/METADATA,,", f"{info.name}/WHEEL,,"]
    records += [f"{info.name}/INSTALLER,,", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(records) + "\n")


def test_azure_layout_puts_packages_where_the_functions_host_reads_them(
    app_dir: tuple[Path, str], tmp_path: Path
) -> None:
    _, name = app_dir
    site = tmp_path / "site"
    # The Service Bus adapter is written elsewhere: a stand-in needing only the runtime's package.
    _fake_distribution(
        site,
        "cloudqueue-tasks-servicebus",
        ["cloudqueue-tasks", "azure-functions"],
        "py3-none-any",
        module="cloudq_servicebus",
    )
    plan = plan_package(name, "azure-functions", search_path=[str(site), *sys.path])
    names = {f.arcname for f in plan.files}
    packages = ".python_packages/lib/site-packages/"
    assert {"function_app.py", "host.json", "requirements.txt", f"{name}.py"} <= names
    assert f"{packages}cloudq_servicebus/__init__.py" in names
    assert f"{packages}cloudq/__init__.py" in names
    assert plan.excluded == ["azure-functions"]
    assert not [n for n in names if n.startswith(("cloudq/", "pydantic/"))]


def test_missing_adapter_names_the_extra_to_install(
    app_dir: tuple[Path, str], tmp_path: Path
) -> None:
    _, name = app_dir
    with pytest.raises(
        DeployError, match=r"cloudqueue-tasks-pubsub is not installed.*cloudqueue-tasks\[pubsub\]"
    ):
        plan_package(name, "gcf", search_path=[str(tmp_path / "empty")])


def test_missing_dependency_says_who_needs_it(app_dir: tuple[Path, str], tmp_path: Path) -> None:
    _, name = app_dir
    site = tmp_path / "site"
    _fake_distribution(
        site,
        "cloudqueue-tasks-pubsub",
        ["cloudqueue-tasks", "google-cloud-nowhere>=2"],
        "py3-none-any",
        module="cloudq_pubsub",
    )
    with pytest.raises(
        DeployError, match=r"google-cloud-nowhere is needed .*cloudqueue-tasks-pubsub requires"
    ):
        plan_package(name, "gcf", search_path=[str(site), *sys.path])


def test_wheels_built_for_another_platform_are_refused(
    app_dir: tuple[Path, str], tmp_path: Path
) -> None:
    _, name = app_dir
    site = tmp_path / "site"
    _fake_distribution(site, "fastthing", [], "cp311-cp311-macosx_11_0_arm64")
    with pytest.raises(DeployError, match=r"fastthing 1.0 is built for cp311-cp311-macosx"):
        plan_package(name, "lambda", extra_distributions=["fastthing"],
                     search_path=[str(site), *sys.path])  # fmt: skip
    # pydantic_core here is an x86_64 wheel: it cannot go to an arm64 function.
    if os.uname().machine == "x86_64":
        with pytest.raises(DeployError, match=r"pydantic_core .* does not run on lambda"):
            plan_package(name, "lambda", architecture="arm64")


def test_two_different_files_for_one_name_are_refused(
    app_dir: tuple[Path, str], tmp_path: Path
) -> None:
    folder, _ = app_dir
    (folder / "handler.py").write_text("handler = None\n")  # would shadow the entry file
    with pytest.raises(DeployError, match=r"two different files would be 'handler\.py'"):
        plan_package("handler", "lambda")
    sys.modules.pop("handler", None)


def test_cli_packages_with_progress_and_reports_sizes(
    app_dir: tuple[Path, str], tmp_path: Path
) -> None:
    _, name = app_dir
    out = tmp_path / "cli.zip"
    result = CliRunner().invoke(
        deploy, ["package", "--target", "lambda", "-o", str(out)], obj=_Context(name)
    )
    assert result.exit_code == 0, result.output
    assert "packaging" in result.output  # the progress bar's label
    assert f"{out}: " in result.output and "left to the runtime: boto3" in result.output
    assert "source_code_hash" in result.output and zipfile.is_zipfile(out)
    refused = CliRunner().invoke(deploy, ["package", "--target", "lambda"], obj=_Context(None))
    assert refused.exit_code == 2 and "name the app module" in refused.output


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ('python_version >= "3.8"', True),
        ('python_version < "3.10"', False),
        ('sys_platform == "win32"', False),
        ('platform_system == "Windows" or (os_name == "posix" and extra == "")', True),
        ("extra == 'email'", False),
        ('platform_machine == "aarch64"', False),
        ('python_full_version ~= "3.11.0"', sys.version_info[:2] == (3, 11)),
        ('"linux" in sys_platform', True),
    ],
)
def test_markers_are_judged_for_the_target(marker: str, expected: bool) -> None:
    assert evaluate_marker(marker, target_environment("x86_64")) is expected


def test_requirements_are_read_with_their_extras_and_markers() -> None:
    requirement = parse_requirement('Moto[Server,S3] >=5 ; extra == "all"')
    assert requirement.name == "moto" and requirement.extras == {"server", "s3"}
    assert requirement.marker == 'extra == "all"'
    env = {**target_environment("x86_64"), "extra": "all"}
    assert evaluate_marker(requirement.marker, env)
    with pytest.raises(Exception, match="unknown marker variable"):
        evaluate_marker("nonsense == '1'", env)


def test_deploy_tooling_stays_out_of_import_cloudq_and_needs_no_sdk() -> None:
    # Against the bare interpreter's modules: namespace-package .pth files of installed SDKs
    # may create 'google' at start-up, which is not cloudq's doing.
    probe = (
        "import sys; start = set(sys.modules); "
        "import cloudq; before = 'cloudq.deploy' in sys.modules; "
        "import cloudq.deploy.cli; "
        "print(before, sorted(m for m in ('boto3', 'botocore', 'google', 'azure') "
        "if m in set(sys.modules) - start))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "False []"


def test_app_package_and_included_files_come_along(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"shop_{uuid.uuid4().hex[:8]}"
    package = tmp_path / name
    (package / "templates" / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text(textwrap.dedent(APP))
    (package / "templates" / "receipt.txt").write_text("Dear {name}")
    (package / "templates" / "__pycache__" / "x.pyc").write_bytes(b"")
    (package / ".secret").write_text("not for the cloud")
    (tmp_path / "settings.toml").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    plan = plan_package(f"{name}.tasks:app", "lambda", include=[Path("settings.toml")])
    names = {f.arcname for f in plan.files}
    assert {f"{name}/__init__.py", f"{name}/tasks.py", f"{name}/templates/receipt.txt"} <= names
    assert "settings.toml" in names
    assert not [n for n in names if n.startswith(name) and ("pycache" in n or "secret" in n)]
    with pytest.raises(DeployError, match="only paths under"):
        plan_package(f"{name}.tasks", "lambda", include=[Path("/etc/hostname")])
