"""``cloudq multi``: background workers with pid files and log files, like Celery's multi.

``cloudq multi start w1 w2 -A tasks -l info -Q high,default`` starts one ``cloudq worker`` per
name, detached (a session of its own), node name ``w1@<host>``, pid file ``%n.pid`` and log file
``%n%I.log`` in the current directory unless ``--pidfile`` / ``--logfile`` say otherwise. The
worker writes its own pid file (and removes it when it exits), so a start is "OK" once the pid
file names the new process. ``stop`` sends SIGTERM (a graceful stop), ``stopwait`` also waits for
the exit, ``restart`` does that one node at a time and starts it again, ``kill`` sends SIGKILL.

Expansions (Celery's): ``%n`` name (``w1``), ``%h`` host, ``%d`` domain, ``%p`` full node name
(``w1@host``), ``%i`` process index (0), ``%I`` index with separator (empty: one log per node),
``%%`` a percent sign.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cloudq.errors import ConfigurationError

DEFAULT_PIDFILE = "%n.pid"
DEFAULT_LOGFILE = "%n%I.log"
START_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.1
_EXPANSION = re.compile(r"%[%hndpiI]")


def expand(pattern: str, nodename: str, index: int | None = None) -> str:
    """Celery's ``%n``-style expansions of a node name in a path or a node name."""
    name, _, host = nodename.partition("@")
    host = host or socket.gethostname()
    values = {
        "%%": "%",
        "%h": host,
        "%n": name,
        "%d": host.partition(".")[2],
        "%p": f"{name}@{host}",
        "%i": str(index or 0),
        "%I": f"-{index}" if index else "",
    }
    return _EXPANSION.sub(lambda m: values[m.group()], pattern)


def nodename(name: str) -> str:
    """``w1`` -> ``w1@<host>``; ``w1@%h`` expanded; a full ``name@host`` is kept."""
    short, at, host = name.partition("@")
    if not at:
        return f"{name}@{socket.gethostname()}"
    return f"{short}@{expand(host, short + '@')}"


# --- pid files ------------------------------------------------------------------------------------
def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: it has exited and waits to be reaped)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)  # our own child: reap it if it exited
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def write_pidfile(path: Path) -> None:
    """Write our pid (atomically); refuse if the file names another process that runs."""
    pid = read_pid(path)
    if pid is not None and pid != os.getpid() and alive(pid):
        raise ConfigurationError(
            f"pid file {str(path)!r} names process {pid}, which is running: is this worker "
            "already started? (stop it, or use another --pidfile)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(f"{os.getpid()}\n")
    tmp.replace(path)


def remove_pidfile(path: Path) -> None:
    """Remove the pid file if it still names this process."""
    if read_pid(path) == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# --- nodes ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    nodename: str
    pidfile: Path
    logfile: Path

    @property
    def pid(self) -> int | None:
        return read_pid(self.pidfile)


@dataclass(frozen=True)
class Plan:
    nodes: list[Node]
    worker_args: list[str]
    app_ref: str | None


_OWN_OPTIONS = {"--pidfile": "pidfile", "--logfile": "logfile", "-A": "app", "--app": "app"}


def parse(argv: Sequence[str], app_ref: str | None, cwd: Path) -> Plan:
    """Split ``w1 w2 -A tasks --pidfile=... -l info -Q q`` into nodes and the worker's options.

    A single number N names N nodes ``cloudq1..cloudqN``.
    """
    args = list(argv)
    names: list[str] = []
    while args and not args[0].startswith("-"):
        names.append(args.pop(0))
    if len(names) == 1 and names[0].isdigit():
        names = [f"cloudq{i}" for i in range(1, int(names[0]) + 1)]
    if not names:
        raise ConfigurationError("name the nodes: cloudq multi start w1 w2 -A tasks -Q ...")
    own = {"pidfile": DEFAULT_PIDFILE, "logfile": DEFAULT_LOGFILE, "app": app_ref or ""}
    rest: list[str] = []
    while args:
        arg = args.pop(0)
        key, eq, value = arg.partition("=")
        if key in _OWN_OPTIONS:
            if not eq:
                if not args:
                    raise ConfigurationError(f"{key} needs a value")
                value = args.pop(0)
            own[_OWN_OPTIONS[key]] = value
        elif key in ("-n", "--hostname"):
            raise ConfigurationError("multi names the nodes itself (w1 w2 ...): drop -n")
        else:
            rest.append(arg)
    nodes = []
    for name in names:
        full = nodename(name)
        nodes.append(
            Node(
                full,
                cwd / expand(own["pidfile"], full),
                cwd / expand(own["logfile"], full),
            )
        )
    return Plan(nodes, rest, own["app"] or None)


def worker_command(plan: Plan, node: Node) -> list[str]:
    app = ["-A", plan.app_ref] if plan.app_ref else []
    return [
        sys.executable,
        "-m",
        "cloudq.cli",
        *app,
        "worker",
        "-n",
        node.nodename,
        "--pidfile",
        str(node.pidfile),
        "--logfile",
        str(node.logfile),
        *plan.worker_args,
    ]


def start(plan: Plan, node: Node, timeout: float = START_TIMEOUT_SECONDS) -> tuple[bool, str]:
    """Start one node detached; (ok, what happened)."""
    pid = node.pid
    if pid is not None and alive(pid):
        return True, f"already running (pid {pid})"
    if pid is not None:
        node.pidfile.unlink(missing_ok=True)  # stale: its process is gone
    node.logfile.parent.mkdir(parents=True, exist_ok=True)
    with node.logfile.open("ab") as log:
        proc = subprocess.Popen(
            worker_command(plan, node),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.pid == proc.pid:
            return True, f"OK (pid {proc.pid})"
        code = proc.poll()
        if code is not None:
            return False, f"FAILED: exited with code {code}; see {node.logfile}"
        time.sleep(POLL_SECONDS)
    return False, f"FAILED: no pid file within {timeout:.0f}s; see {node.logfile}"


def stop(node: Node, signum: int = signal.SIGTERM) -> tuple[int | None, str]:
    """Signal one node; (pid signalled or None, what happened)."""
    pid = node.pid
    if pid is None or not alive(pid):
        if pid is not None:
            node.pidfile.unlink(missing_ok=True)
        return None, "DOWN"
    os.kill(pid, signum)
    return pid, f"{signal.Signals(signum).name.removeprefix('SIG')} -> {pid}"


def wait(
    pids: dict[Node, int], tick: Callable[[], None] = lambda: None, timeout: float | None = None
) -> list[Node]:
    """Wait until each node's process has exited; returns those still running at the timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    waiting = dict(pids)
    while waiting:
        for node, pid in list(waiting.items()):
            if not alive(pid):
                del waiting[node]
                if node.pid == pid:  # killed before it could remove its pid file
                    node.pidfile.unlink(missing_ok=True)
        if not waiting or (deadline is not None and time.monotonic() >= deadline):
            break
        tick()
        time.sleep(POLL_SECONDS)
    return list(waiting)


class Echo(Protocol):
    """Where ``run`` reports (``click.echo``)."""

    def __call__(self, message: str, *, nl: bool = True) -> None: ...


ACTIONS = ("start", "stop", "stopwait", "restart", "kill")


def run(action: str, plan: Plan, echo: Echo) -> bool:
    """``cloudq multi ACTION``: start, stop (SIGTERM), stopwait (and wait), restart (graceful
    and rolling: one node at a time) or kill (SIGKILL) the plan's nodes, reporting each as
    Celery's ``multi`` does. False if a node could not be started."""
    failed = False
    last_dot = [time.monotonic()]

    def dots() -> None:
        if time.monotonic() - last_dot[0] >= 1.0:
            last_dot[0] = time.monotonic()
            echo(".", nl=False)

    def start_all(nodes: list[Node]) -> None:
        nonlocal failed
        echo("> Starting nodes...")
        for node in nodes:
            ok, what = start(plan, node)
            failed |= not ok
            echo(f"\t> {node.nodename}: {what}")

    def stop_all(signum: int) -> dict[Node, int]:
        echo("> Stopping nodes...")
        pids = {}
        for node in plan.nodes:
            pid, what = stop(node, signum)
            echo(f"\t> {node.nodename}: {what}")
            if pid is not None:
                pids[node] = pid
        return pids

    def wait_all(pids: dict[Node, int]) -> None:
        if not pids:
            return
        listed = ", ".join(str(p) for p in pids.values())
        echo(f"> Waiting for {len(pids)} node{'s' if len(pids) > 1 else ''} -> {listed}")
        wait(pids, dots)
        echo("")
        for node in pids:
            echo(f"\t> {node.nodename}: OK")

    if action == "start":
        start_all(plan.nodes)
    elif action in ("stop", "kill"):
        stop_all(signal.SIGKILL if action == "kill" else signal.SIGTERM)
    elif action == "stopwait":
        wait_all(stop_all(signal.SIGTERM))
    elif action == "restart":  # graceful and rolling: stop one node, wait for it, start it again
        for node in plan.nodes:
            pid, what = stop(node)
            echo(f"> Restarting {node.nodename}: {what}")
            if pid is not None:
                wait_all({node: pid})
            start_all([node])
    else:
        raise ConfigurationError(f"unknown multi action {action!r}: one of {', '.join(ACTIONS)}")
    return not failed
