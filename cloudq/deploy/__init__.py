"""Deployment tooling: reproducible serverless packages and Terraform variables from an app.

Only the ``cloudq deploy`` and ``cloudq terraform`` commands import this; ``import cloudq`` does
not, so a deployed function never loads it.
"""

from cloudq.deploy.package import TARGETS, DeployError, PackagePlan, build_package, plan_package
from cloudq.deploy.tfvars import export_tfvars, render_tfvars, tfvars_drift

__all__ = [
    "TARGETS",
    "DeployError",
    "PackagePlan",
    "build_package",
    "export_tfvars",
    "plan_package",
    "render_tfvars",
    "tfvars_drift",
]
