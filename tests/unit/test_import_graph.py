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


WORKER_FAMILY = ("cloudq.worker", "cloudq.pool", "cloudq.control")
"""The modules that once imported each other in a circle (worker, pool, heartbeat)."""


def _node(target: str, nodes: set[str]) -> str | None:
    """The module of ``nodes`` that an imported name belongs to (the longest prefix)."""
    while target:
        if target in nodes:
            return target
        target = target.rpartition(".")[0]
    return None


def circles(prefixes: tuple[str, ...]) -> list[list[str]]:
    """Import circles among the modules under ``prefixes``: type-checking and lazy imports
    count, since each is an arrow a reader follows; a package importing its own submodules
    does not."""
    nodes = {m for m in GRAPH if m.startswith(prefixes)}
    edges = {
        m: {
            n
            for t in GRAPH[m]
            if (n := _node(t, nodes)) is not None and n != m and not n.startswith(m + ".")
        }
        for m in nodes
    }
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                found.append([*stack[stack.index(n) :], n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(nodes):
        if m not in state:
            visit(m)
    return found


def test_no_import_circle_among_worker_pool_and_control() -> None:
    assert circles(WORKER_FAMILY) == []


def test_every_core_logger_is_named_after_its_module() -> None:
    """``get_logger(name)`` in the core names its own module, so a log line says where it
    comes from and ``logging.getLogger("cloudq.worker")`` covers the worker's modules."""
    wrong = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "get_logger"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and node.args[0].value != module_name(path)
            ):
                wrong.append(f"{module_name(path)}: {node.args[0].value}")
    assert wrong == []
