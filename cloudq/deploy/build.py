"""Writing a deployment zip from its plan (``cloudq.deploy.package.plan_package``).

Same inputs give a byte-identical zip (fixed timestamps, sorted entries, fixed permissions, no
bytecode), so Terraform's ``source_code_hash`` changes only when the code does and an unchanged
app is never redeployed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cloudq.logsafe import get_logger

if TYPE_CHECKING:
    from cloudq.deploy.package import PackagePlan

logger = get_logger("cloudq.deploy.build")

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
"""The earliest time a zip can hold: every entry gets it, so mtimes never change the bytes."""
FILE_MODE = stat.S_IFREG | 0o644
"""Every entry is a plain readable file: the build machine's umask must not show in the zip."""
COMPRESS_LEVEL = 9


@dataclass
class BuildResult:
    path: Path
    zip_bytes: int
    unzipped_bytes: int
    entries: int
    sha256: str
    warnings: list[str] = field(default_factory=list)

    @property
    def source_code_hash(self) -> str:
        """Base64 SHA-256, as Terraform's ``filebase64sha256`` gives it."""
        return base64.b64encode(bytes.fromhex(self.sha256)).decode("ascii")


def _entry(arcname: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(arcname, date_time=ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix, so the mode bits below are read
    info.external_attr = FILE_MODE << 16
    return info


def build_package(
    plan: PackagePlan, output: Path, progress: Callable[[int], None] | None = None
) -> BuildResult:
    """Write the zip (atomically: a failed build leaves no half file); ``progress(bytes)``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".cloudq-", suffix=".zip", dir=output.parent)
    os.close(descriptor)
    unzipped = 0
    try:
        with zipfile.ZipFile(temporary, "w") as archive:
            for item in plan.files:
                data = item.read()
                archive.writestr(_entry(item.arcname), data, compresslevel=COMPRESS_LEVEL)
                unzipped += len(data)
                if progress is not None:
                    progress(len(data))
        os.chmod(temporary, 0o644)
        os.replace(temporary, output)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    digest = hashlib.sha256(output.read_bytes()).hexdigest()
    size = output.stat().st_size
    warnings = []
    limit = plan.target.max_zip_bytes
    if limit is not None and size > limit:
        warnings.append(
            f"the zip is {size / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB "
            f"{plan.target.name} takes directly: upload it to S3 and deploy from there"
        )
    limit = plan.target.max_unzipped_bytes
    if limit is not None and unzipped > limit:
        warnings.append(
            f"unzipped it is {unzipped / 2**20:.1f} MiB, over {plan.target.name}'s "
            f"{limit / 2**20:.0f} MiB: leave out dependencies or use a container image"
        )
    for warning in warnings:
        logger.warning("%s", warning)
    return BuildResult(output, size, unzipped, len(plan.files), digest, warnings)
