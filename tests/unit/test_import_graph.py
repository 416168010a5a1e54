"""The core's import graph, read from the source (``ast``): no arrow from the core to an adapter
or a provider's tool, and no circle among the worker's modules."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "cloudq"
OUTSIDE_THE_CORE = ("cloudq_sqs", "cloudq_pubsub", "cloudq_servicebus", "moto", "boto3")
"""What the core reaches only through entry points (``cloudq.plugins``)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (lazy imports in functions too)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    package = module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


GRAPH = {module_name(p): imports(p) for p in CORE.rglob("*.py")}


def test_the_core_imports_no_adapter_nor_provider_tool() -> None:
    arrows = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if target.split(".")[0] in OUTSIDE_THE_CORE
    )
    assert arrows == []
