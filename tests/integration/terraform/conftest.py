"""Terraform for the tests: the installed binary and the hashicorp/aws provider from a mirror.

No registry is reachable, so ``terraform init`` installs providers only from a filesystem mirror
through a CLI config of our own (``TF_CLI_CONFIG_FILE``). Without terraform or the mirror the
tests skip with the reason, except under CI=true, where they fail (tests/tools.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.tools import missing_tool

ROOT = Path(__file__).resolve().parents[3]
MODULES = ROOT / "terraform"
PROVIDER = "registry.terraform.io/hashicorp/aws"
# Where machines here keep provider mirrors; CLOUDQ_TF_PLUGIN_MIRROR names another.
MIRROR_CANDIDATES = (
    "/opt/tf-plugins",
    "~/.terraform.d/plugins",
    "~/.local/share/terraform/plugins",
    "/usr/local/share/terraform/plugins",
    "/usr/share/terraform/plugins",
)


@dataclass
class Terraform:
    """Runs the terraform binary with the test's CLI config and environment."""

    binary: str
    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    def __call__(
        self, workdir: Path, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        done = subprocess.run(
            [self.binary, f"-chdir={workdir}", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.timings[args[0]] = time.monotonic() - started
        if check and done.returncode != 0:
            raise AssertionError(
                f"terraform {' '.join(args)} exited {done.returncode}\n"
                f"--- stdout ---\n{done.stdout[-6000:]}\n--- stderr ---\n{done.stderr[-6000:]}"
            )
        return done


def find_mirror() -> Path | None:
    """The folder holding ``registry.terraform.io/hashicorp/aws`` (a filesystem mirror)."""
    named = os.environ.get("CLOUDQ_TF_PLUGIN_MIRROR")
    for candidate in ([named] if named else []) + list(MIRROR_CANDIDATES):
        path = Path(candidate).expanduser()
        if (path / PROVIDER).is_dir():
            return path
    return None


@pytest.fixture(scope="session")
def terraform_binary() -> str:
    binary = shutil.which("terraform")
    if binary is None:
        missing_tool("terraform is not installed (the Terraform tests need 1.5 or later)")
    return binary


@pytest.fixture(scope="session")
def terraform(
    terraform_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Terraform]:
    """Terraform that installs hashicorp/aws from the mirror and never asks a registry."""
    mirror = find_mirror()
    if mirror is None:
        missing_tool(
            f"no filesystem mirror of {PROVIDER} found (looked in CLOUDQ_TF_PLUGIN_MIRROR and "
            f"{', '.join(MIRROR_CANDIDATES)})"
        )
    home = tmp_path_factory.mktemp("terraform")
    config = home / "cli.tfrc"
    # One copy of the (700 MB) provider for the session; each init links to it.
    cache = home / "plugin-cache"
    cache.mkdir()
    config.write_text(
        f'plugin_cache_dir = "{cache}"\n'
        "plugin_cache_may_break_dependency_lock_file = true\n"
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror}"\n'
        '    include = ["registry.terraform.io/hashicorp/*"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/*/*"]\n  }\n'
        "}\n"
    )
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(config),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
    }
    env.pop("TF_DATA_DIR", None)
    yield Terraform(terraform_binary, env)


def copy_modules(destination: Path) -> Path:
    """A copy of terraform/ to work in: init and state never touch the checkout."""
    target = destination / "terraform"
    shutil.copytree(
        MODULES,
        target,
        ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", ".terraform.lock.hcl"),
    )
    return target
