"""bench/REPORT.md and bench/report.png from the rows of every provider's section."""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench.measure import ROUND, Provider, Row

FIXES = Path(__file__).with_name("FIXES.md")
"""What was fixed in the library to reach the targets, kept by hand, copied into the report."""


@dataclass
class Section:
    """One provider's results: what ran, what could not, and why."""

    provider: Provider
    endpoint: str = ""
    rows: list[Row] = field(default_factory=list)
    not_run: list[tuple[str, str]] = field(default_factory=list)
    """(contender label, reason)"""
    error: str = ""
    """Why the whole section could not run (the emulator did not start...)."""
    spots: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def good(self) -> dict[str, Row]:
        return {row.contender.key: row for row in self.rows if not row.error}


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def div(a: float, b: float) -> float:
    """a / b, or nan when b is 0 (tiny N: CPU times tick in 10 ms)."""
    return a / b if b else float("nan")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and not math.isnan(a) and not math.isnan(b) else "n/a"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# --- targets ---------------------------------------------------------------------------------
def targets(section: Section) -> list[str]:
    """Issue 11's targets for cloudq on one provider, as table rows (without the header)."""
    p, rows = section.provider, section.good()
    name = p.title
    lines: list[str] = []

    def add(what: str, value: float, goal: float, text: str, goal_text: str) -> None:
        met = "yes" if not math.isnan(value) and value <= goal else "no"
        lines.append(f"| {name} | {what} | {text} | {goal_text} | {met} |")

    cqb, cqd = rows.get(p.cloudq_batch), rows.get(p.cloudq_delay)
    for key in p.raws:
        raw = rows.get(key)
        if not (raw and cqb):
            continue
        vs = raw.contender.label
        w = div(cqb.worker_cpu, raw.worker_cpu)
        add(f"worker CPU vs {vs}", w, 1.3, f"{w:.2f}x", "<= 1.3x")
        pc = div(cqb.producer_cpu, raw.producer_cpu)
        add(f"producer CPU, batch send vs {vs}", pc, 1.3, f"{pc:.2f}x", "<= 1.3x")
        wall = div(cqb.consume_wall, raw.consume_wall)
        add(f"wall (produce + consume) vs {vs}", wall, 1.2, f"{wall:.2f}x", "<= 1.2x")
    raw1 = rows.get(p.raw_single)
    if raw1 and cqd:
        pc = div(cqd.producer_cpu, raw1.producer_cpu)
        add(f"producer CPU, delay() vs {raw1.contender.label}", pc, 1.3, f"{pc:.2f}x", "<= 1.3x")
    if cqb:
        for peer in p.peers:
            if peer in rows:
                cheaper = div(rows[peer].worker_cpu, cqb.worker_cpu)
                add(
                    f"worker CPU cheaper than {rows[peer].contender.label}",
                    div(5, cheaper),
                    1.0,
                    f"{cheaper:.2f}x cheaper",
                    ">= 5x cheaper",
                )
        add("idle worker RSS", cqb.idle_rss_mb, 60, f"{cqb.idle_rss_mb:.0f} MB", "<= 60 MB")
    return lines


def cold_target(cold: dict[str, float]) -> list[str]:
    c = cold.get("cloudq: import + App + 10 tasks")
    k = cold.get("Celery: import + Celery + 10 tasks")
    if not (c and k):
        return []
    value = div(c, k)
    met = "yes" if not math.isnan(value) and value <= 0.5 else "no"
    what = "cold start (import + App + 10 tasks) vs Celery"
    return [f"| all | {what} | {value:.2f}x | <= 0.5x | {met} |"]


# --- sections --------------------------------------------------------------------------------
def section_lines(section: Section) -> list[str]:
    p = section.provider
    out = [f"## {p.title}", ""]
    if section.endpoint:
        n = next((row.n for row in section.rows), 0)
        scaled = f" ({p.scale} x --n: a fast emulator)" if p.scale > 1 else ""
        out += [
            f"On {section.endpoint}. N = {n}{scaled}; {section.seconds:.0f} s for this section."
        ]
        out.append("")
    if section.error:
        first = section.error.strip().splitlines()[0] if section.error.strip() else "failed"
        out += [f"**Not run**: {first}", ""]
    base = section.good().get(p.raws[0]) if p.raws else None
    if section.rows:
        vs_label = f"worker CPU vs {base.contender.key}" if base else "worker CPU vs raw"
        out += [
            "| contender | wall s (produce + consume) | tasks/s | producer CPU s / 1k |"
            f" worker CPU s / 1k | {vs_label} | p50 ms | p99 ms | idle RSS MB | ran |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in section.rows:
            c = row.contender
            if row.error:
                first = row.error.strip().splitlines()[0] if row.error.strip() else "failed"
                out.append(f"| {c.label} | failed: {first} | | | | | | | | |")
                continue
            vs = ratio(row.worker_cpu, base.worker_cpu) if base else "n/a"
            out.append(
                f"| {c.label} | {row.consume_wall:.2f} | {div(row.n, row.consume_wall):.0f} | "
                f"{row.per_1k(row.producer_cpu):.3f} | {row.per_1k(row.worker_cpu):.3f} | {vs} | "
                f"{row.pct(0.5):.0f} | {row.pct(0.99):.0f} | {row.idle_rss_mb:.0f} | "
                f"{row.processed}/{row.expected} |"
            )
        out += ["", "Producer wall for N (scenario 1, send calls only):", ""]
        out += ["| contender | produce wall s | tasks/s |", "|---|---|---|"]
        for row in section.rows:
            if not row.error:
                out.append(
                    f"| {row.contender.label} | {row.produce_wall:.2f} | "
                    f"{div(row.n, row.produce_wall):.0f} |"
                )
        out.append("")
    for label, reason in section.not_run:
        out += [f"- **{label}: not run.** {reason}"]
    out += [f"- {note}" for note in p.notes]
    if section.not_run or p.notes:
        out.append("")
    if section.spots:
        out += [f"### cloudq worker hot spots on {p.title} (separate pass, not in the table)", ""]
        out += [*section.spots, ""]
    return out


def write_report(
    sections: list[Section],
    cold: dict[str, float],
    command: str,
    n: int,
    latency_n: int,
    path: Path,
    chart: str,
    total_seconds: float,
    load: tuple[float, float] | None = None,
    reps: int = 1,
    sweeps: int = 1,
) -> None:
    titles = ", ".join(s.provider.title for s in sections)
    out = [
        "# cloudq benchmarks: " + ", ".join(s.provider.title.split(" (")[0] for s in sections),
        "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"in {total_seconds:.0f} s.",
        "",
        f"One run over {titles}. Each provider's emulator is started by the bench itself and "
        "stopped at the end of its section; a provider's contenders run in sequence on the same "
        f"emulator, each with a queue of its own. N = {n} no-op tasks (more on a fast emulator: "
        f"each section says) are sent in rounds of {ROUND}, each round run before the next is "
        f"sent, so no queue is deeper than {ROUND}. Every contender is run {sweeps} time(s), "
        "in sweeps alternately forward and backward through the contenders (a load that drifts "
        "during a section then falls on all alike), each time with a fresh worker running "
        f"scenario 2 {reps} time(s); each measure shown is the median over all those passes, "
        "and latency (enqueue -> start) is taken over "
        f"{latency_n} tasks sent one at a time, spread over the sweeps. The worker is a "
        "subprocess. CPU is the client "
        "processes' own (producer: this process around the send calls; worker: the worker's "
        "process tree via psutil, in 10 ms ticks), never the emulator's; wall time includes the "
        "emulator, which is the bottleneck there. Idle RSS: the worker's process tree after one "
        "task.",
        "",
        "## cloudq against the targets of issue 11",
        "",
        "| provider | target | measured | goal | met |",
        "|---|---|---|---|---|",
    ]
    for section in sections:
        out += targets(section)
    out += cold_target(cold)
    out.append("")
    if FIXES.exists():  # hand-written: what was changed in the library, with before/after
        out += [FIXES.read_text().strip(), ""]
    if chart:
        out += [f"![chart]({chart})", ""]
    for section in sections:
        out += section_lines(section)
    if cold:
        out += ["## Cold start (fresh interpreter, median wall ms)", ""]
        out += ["| snippet | ms |", "|---|---|"]
        out += [f"| {name} | {ms:.0f} |" for name, ms in cold.items()]
        out.append("")
    failed = [(s.provider, row) for s in sections for row in s.rows if row.error]
    broken = [s for s in sections if s.error]
    if failed or broken:
        out += ["## Failures", ""]
        for section in broken:
            out += [f"### {section.provider.title}", "", "```", section.error.strip()[-1500:]]
            out += ["```", ""]
        for provider, row in failed:
            out += [f"### {provider.title}: {row.contender.label}", "", "```"]
            out += [row.error.strip()[-1500:], "```", ""]
    out += ["## Machine and versions", ""]
    out.append(f"- {platform.platform()}, Python {platform.python_version()}")
    out.append(f"- CPU: {cpu_model()}, {os.cpu_count()} logical")
    if load:
        out.append(
            f"- load average (1 min): {load[0]:.1f} at the start, {load[1]:.1f} at the end "
            "(anything else running on the machine shows in wall time and latency)"
        )
    dists = ["cloudqueue-tasks"]
    for section in sections:
        dists += [d for d in section.provider.dists if d not in dists]
    out.append("- " + ", ".join(f"{d} {version(d)}" for d in dists))
    for section in sections:
        if section.endpoint:
            out.append(f"- {section.provider.title}: {section.endpoint}")
    out.append(f"- command: `{command}`")
    path.write_text("\n".join(out) + "\n")


def write_chart(sections: list[Section], path: Path) -> bool:
    """One row of three panels per provider: worker CPU, producer CPU, wall."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    shown = [s for s in sections if s.good()]
    if not shown:
        return False
    fig, axes = plt.subplots(len(shown), 3, figsize=(15, 4.2 * len(shown)), squeeze=False)
    for ax_row, section in zip(axes, shown, strict=True):
        good = list(section.good().values())
        labels = [row.contender.key for row in good]
        panels = [
            ("worker CPU s / 1k tasks", [row.per_1k(row.worker_cpu) for row in good]),
            ("producer CPU s / 1k tasks", [row.per_1k(row.producer_cpu) for row in good]),
            ("wall s (produce + consume N)", [row.consume_wall for row in good]),
        ]
        for ax, (title, values) in zip(ax_row, panels, strict=True):
            colors = ["tab:orange" if "cloudq" in label else "tab:blue" for label in labels]
            ax.bar(labels, values, color=colors)
            ax.set_title(f"{section.provider.title}: {title}", fontsize=10)
            ax.tick_params(axis="x", rotation=40, labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
