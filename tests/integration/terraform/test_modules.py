"""terraform's own checks: fmt for every module, init + validate where the provider is here (AWS).

The google and azurerm providers cannot be installed on these machines, so GCP and Azure modules
get fmt here and HCL parsing in tests/deploy/test_terraform_hcl.py, never validate.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.terraform.conftest import MODULES, Terraform, copy_modules

pytestmark = pytest.mark.integration

# The examples call every AWS module; validating them validates the modules (each validate
# starts the 700 MB provider, ~2 s).
AWS_ROOTS = sorted(
    str(p.relative_to(MODULES)) for p in MODULES.glob("aws-*/examples/*") if list(p.glob("*.tf"))
)


def test_every_module_is_formatted(terraform_binary: str) -> None:
    import subprocess

    done = subprocess.run(
        [terraform_binary, "fmt", "-check", "-recursive", "-diff", str(MODULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"run terraform fmt -recursive terraform/:\n{done.stdout}"


def test_aws_modules_and_examples_validate(terraform: Terraform, tmp_path: Path) -> None:
    assert len(AWS_ROOTS) == 4, AWS_ROOTS
    modules = copy_modules(tmp_path)
    for root in AWS_ROOTS:
        terraform(modules / root, "init", "-backend=false", "-no-color")
        done = terraform(modules / root, "validate", "-json", "-no-color", check=False)
        report = json.loads(done.stdout)
        assert report["valid"], f"{root}: {json.dumps(report['diagnostics'], indent=1)}"
        assert report["warning_count"] == 0, f"{root}: {report['diagnostics']}"
