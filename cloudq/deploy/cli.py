"""``cloudq deploy package`` and ``cloudq terraform export``.

Registered in the ``cloudq.commands`` entry-point group (``deploy`` and ``terraform``); until
then ``python -m cloudq.deploy.cli -A tasks deploy ...`` runs them through the same CLI.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from cloudq.deploy.build import build_package
from cloudq.deploy.package import TARGETS, plan_package
from cloudq.deploy.tfvars import export_tfvars, render_tfvars, tfvars_drift


def _setup(loglevel: str) -> None:
    from cloudq.cli import setup_logging

    setup_logging(loglevel)


def _app_ref(obj: Any) -> str:
    ref = getattr(obj, "app_ref", None)
    if not ref:
        raise click.UsageError("name the app module: cloudq -A tasks ... (or CLOUDQ_APP)")
    return str(ref)


@click.group("deploy")
def deploy() -> None:
    """Build what a serverless platform runs: cloudq -A tasks deploy package --target lambda."""


@deploy.command("package")
@click.option("--target", type=click.Choice(sorted(TARGETS)), required=True)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the zip to write  [default: dist/cloudq-<target>.zip]",
)
@click.option(
    "--arch",
    "architecture",
    type=click.Choice(["x86_64", "arm64"]),
    default="x86_64",
    show_default=True,
    help="the function's CPU (arm64: Lambda only)",
)
@click.option(
    "--with",
    "extra_distributions",
    multiple=True,
    metavar="DIST",
    help="another installed distribution the tasks import (repeatable)",
)
@click.option(
    "--include",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="more app files or folders, under the current directory (repeatable)",
)
@click.option(
    "--kit",
    "kit_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="a folder with your own entry files instead of the ones shipped for the target",
)
@click.option("-l", "--loglevel", default="warning", show_default=True)
@click.pass_obj
def package(
    obj: Any,
    target: str,
    output: Path | None,
    architecture: str,
    extra_distributions: tuple[str, ...],
    include: tuple[Path, ...],
    kit_dir: Path | None,
    loglevel: str,
) -> None:
    """Zip the app, cloudq and the target's adapter (reproducibly: same input, same bytes)."""
    _setup(loglevel)
    app_ref = _app_ref(obj)
    app = obj.app()  # imported here, so a broken app fails now rather than at the first invoke
    conf = app.conf
    plan = plan_package(
        app_ref,
        target,
        architecture=architecture,
        urls=[conf.broker_url, conf.result_backend, conf.claim_check_url],
        extra_distributions=extra_distributions,
        include=include,
        kit_dir=kit_dir,
    )
    output = output or Path("dist") / f"cloudq-{target}.zip"
    label = f"packaging {len(plan.files)} files for {target}"
    with click.progressbar(length=plan.total_bytes, label=label, file=sys.stderr) as bar:
        result = build_package(plan, output, progress=bar.update)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"{result.path}: {result.zip_bytes / 2**20:.2f} MiB ({result.unzipped_bytes / 2**20:.2f} "
        f"MiB unzipped, {result.entries} files), python{plan.python} {plan.architecture}\n"
        f"  packaged: {', '.join(f'{n} {v}' for n, v in plan.distributions.items())}\n"
        f"  left to the runtime: {', '.join(plan.excluded) or 'nothing'}\n"
        f"  sha256: {result.sha256}  (source_code_hash {result.source_code_hash})"
    )


@click.group("terraform")
def terraform() -> None:
    """Keep Terraform in step with the app: cloudq -A tasks terraform export."""


@terraform.command("export")
@click.option(
    "-o",
    "--output",
    default="cloudq.auto.tfvars.json",
    show_default=True,
    help="the .tfvars.json to write (or compare with --check); '-' for standard output",
)
@click.option("--check", is_flag=True, help="write nothing; exit 1 if the file has drifted")
@click.pass_obj
def export(obj: Any, output: str, check: bool) -> None:
    """The app's queues and settings as Terraform variables (.tfvars.json)."""
    app_ref = _app_ref(obj)
    data = export_tfvars(obj.app(), app_ref)
    text = render_tfvars(data)
    if not check:
        if output == "-":
            click.echo(text, nl=False)
        else:
            Path(output).write_text(text, encoding="utf-8")
            click.echo(f"wrote {output}: {len(data['queues'])} queue(s)", err=True)
        return
    if output == "-":
        raise click.UsageError("--check compares with a file: give it with -o")
    path = Path(output)
    if not path.is_file():
        raise click.ClickException(f"{output} does not exist: run without --check to write it")
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise click.ClickException(f"{output} is not JSON: {exc}") from None
    drift = tfvars_drift(data, current)
    if drift:
        for line in drift:
            click.echo(f"  {line}", err=True)
        raise click.ClickException(
            f"{output} has drifted from the app ({len(drift)} difference(s)): run "
            f"cloudq -A {app_ref} terraform export -o {output}, then terraform apply"
        )
    click.echo(f"{output} matches the app", err=True)


def run() -> None:
    """``cloudq`` with these commands added, for when the entry points are not installed."""
    from cloudq import cli

    for command in (deploy, terraform):
        if command.name not in cli.main.commands:
            cli.main.add_command(command)
    cli.run()


if __name__ == "__main__":
    run()
