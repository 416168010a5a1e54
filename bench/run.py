"""cloudq against the raw SDKs and its peers on SQS, Pub/Sub and Service Bus, in one run.

    uv run python bench/run.py [--providers sqs,pubsub,servicebus] [--n 1000] [--latency-n 30]
                               [--only raw-batch,ps-cloudq-batch] [--sweeps 3] [--profile]

For each provider (default: all three) the bench starts its emulator itself with the test
fixtures' helpers (a moto server, the gcloud SDK's Pub/Sub emulator, the project's Service Bus
test endpoint), runs every scenario for every contender on it, stops it, and at the end writes
``bench/REPORT.md`` and ``bench/report.png``:

1. produce N tasks (the producer's wall and its own process CPU, around the send calls only);
2. consume N no-op tasks with one worker subprocess (wall from the first send to the last task
   run; the worker's process-tree CPU from psutil). Sends go in rounds of 100 and each round
   waits until it has been run, so the emulators' queues stay shallow (moto slows down when
   deep);
3. round trip enqueue -> start, p50/p99, one task at a time (low load);
4. cold start: a fresh interpreter importing the library, and import + app + 10 tasks;
5. the idle worker's RSS (process tree) after one warm-up task.

Every contender is run ``--sweeps`` times (default 3), each time with a fresh worker, in sweeps
alternately forward and backward through a provider's contenders; the report gives the median
of each measure. On a shared machine the load drifts over a section: run once each, whichever
contender came last would carry it (one run of all contenders moved a ratio by 0.3).

``--profile`` adds a pass per provider with py-spy on the cloudq worker (hot spots in the
report). The emulators' CPU is never counted: they are the bottleneck in wall time, the CPU
columns are the libraries' own cost. Contenders that cannot run here are listed with the reason.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# ``python bench/run.py`` puts bench/ first on sys.path: its modules must not shadow anything.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import pubsub, servicebus, sqs  # noqa: E402
from bench.measure import (  # noqa: E402
    Provider,
    Row,
    environment,
    merge_rows,
    profile,
    run_contender,
)
from bench.report import Section, write_chart, write_report  # noqa: E402

PROVIDERS: dict[str, Provider] = {
    p.key: p for p in (sqs.PROVIDER, pubsub.PROVIDER, servicebus.PROVIDER)
}


# --- cold start ------------------------------------------------------------------------------
def _tasks(decorate: str) -> str:
    return f"for i in range(10):\n    exec(f'def t{{i}}(x): return x')\n    {decorate}\n"


def cloudq_app(url: str) -> str:
    return f"from cloudq import App\napp = App('x', broker={url!r})\n" + _tasks(
        "app.task(name=f'x.t{i}')(globals()[f't{i}'])"
    )


def celery_app(url: str) -> str:
    return (
        f"from celery import Celery\napp = Celery('x', broker={url!r})\n"
        + _tasks("app.task(name=f'x.t{i}')(globals()[f't{i}'])")
        + "app.finalize()\n"
    )


LAMBDA_FIRST_EVENT = """\
from cloudq import App
app = App('x', broker='sqs://')
for i in range(10):
    exec(f'def t{i}(x): return x')
    app.task(name=f'x.t{i}', ignore_result=True)(globals()[f't{i}'])
from cloudq_sqs import lambda_handler
handler = lambda_handler(app)
body = app.tasks['x.t0'].envelope((1,), {}).encode().decode()
record = {'messageId': 'm1', 'receiptHandle': 'r1', 'body': body, 'messageAttributes': {},
          'attributes': {'ApproximateReceiveCount': '1'},
          'eventSourceARN': 'arn:aws:sqs:us-east-1:000000000000:default'}
assert handler({'Records': [record]}, None) == {'batchItemFailures': []}
"""

COLD = {
    "bare interpreter": ("", "pass"),
    "import cloudq": ("", "import cloudq"),
    "import celery": ("", "import celery"),
    "import dramatiq": ("", "import dramatiq"),
    "cloudq: import + App + 10 tasks": ("", cloudq_app("sqs://")),
    "Celery: import + Celery + 10 tasks": ("", celery_app("sqs://")),
    "dramatiq: import + SQSBroker + 10 actors": (
        "",
        "import dramatiq\nfrom dramatiq_sqs import SQSBroker\n"
        "dramatiq.set_broker(SQSBroker(region_name='us-east-1'))\n"
        + _tasks("dramatiq.actor(actor_name=f't{i}')(globals()[f't{i}'])"),
    ),
    # the first task run: validation and execution paths loaded (no network call)
    "cloudq: + one task run (apply)": (
        "",
        cloudq_app("sqs://") + "app.tasks['x.t0'].apply((1,))\n",
    ),
    "Celery: + one task run (apply)": (
        "",
        celery_app("sqs://") + "app.tasks['x.t0'].apply((1,))\n",
    ),
    # a Lambda's first invocation: the handler runs one SQS record (ignore_result: no call out)
    "cloudq on SQS: Lambda handler, first event": ("sqs", LAMBDA_FIRST_EVENT),
    # the same with the broker client made (no network call): what a serverless handler pays
    "cloudq on SQS: + broker opened": ("sqs", cloudq_app("sqs://") + "app.broker\n"),
    "Celery on SQS: + kombu SQS transport loaded": (
        "sqs",
        celery_app("sqs://") + "import kombu.transport.SQS\n",
    ),
    "cloudq on Pub/Sub: + broker opened": (
        "pubsub",
        cloudq_app("pubsub://p") + "app.broker\n",
    ),
    "Celery on Pub/Sub: + kombu gcpubsub transport loaded": (
        "pubsub",
        celery_app("gcpubsub://projects/p") + "import kombu.transport.gcpubsub\n",
    ),
    "cloudq on Service Bus: + broker opened": (
        "servicebus",
        cloudq_app("servicebus://") + "app.broker\n",
    ),
}
COLD_ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "x",
    "AWS_SECRET_ACCESS_KEY": "x",
    "PUBSUB_EMULATOR_HOST": "127.0.0.1:9",  # clients are made, never called
    "GOOGLE_CLOUD_PROJECT": "p",
    "CLOUDQ_SERVICEBUS_CONNECTION": (
        "Endpoint=sb://127.0.0.1:9;SharedAccessKeyName=k;SharedAccessKey=x;"
        "UseDevelopmentEmulator=true;"
    ),
}


def cold_start(reps: int, providers: list[str]) -> dict[str, float]:
    """Median wall (ms) of a fresh interpreter running each snippet; nan if it fails."""
    result: dict[str, float] = {}
    with environment(**COLD_ENV):
        for name, (provider, code) in COLD.items():
            if provider and provider not in providers:
                continue
            samples = []
            for _ in range(reps):
                t0 = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-c", code], cwd=ROOT, capture_output=True, check=False
                )
                if done.returncode != 0:
                    samples = []
                    break
                samples.append((time.perf_counter() - t0) * 1000)
            result[name] = statistics.median(samples) if samples else float("nan")
    return result


# --- one provider ----------------------------------------------------------------------------
def run_provider(provider: Provider, keys: list[str], args: argparse.Namespace) -> Section:
    section = Section(provider)
    chosen = [c for c in provider.contenders if not keys or c.key in keys]
    runnable = []
    for contender in chosen:
        why = contender.missing()
        if why:
            section.not_run.append((contender.label, why))
            print(f"{contender.key}: not run: {why}", file=sys.stderr)
        else:
            runnable.append(contender)
    if not runnable:
        return section
    workdir = args.out.parent / ".bench-work" / provider.key
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    n = args.n * provider.scale
    print(f"== {provider.title}: starting the emulator", file=sys.stderr, flush=True)
    try:
        with provider.endpoint(workdir) as endpoint:
            section.endpoint = endpoint
            rows: dict[str, list[Row]] = {c.key: [] for c in runnable}
            latency_n = args.latency_n // args.sweeps  # spread over the sweeps
            for sweep in range(args.sweeps):
                # Forward, then backward: a load that drifts during the section falls on every
                # contender alike instead of on whichever runs last.
                order = runnable if sweep % 2 == 0 else runnable[::-1]
                for contender in order:
                    if any(row.error for row in rows[contender.key]):
                        continue
                    print(
                        f"{contender.key} (sweep {sweep + 1}/{args.sweeps}) ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    row = run_contender(
                        provider, contender, n, latency_n, workdir, args.idle_wait, reps=args.reps
                    )
                    rows[contender.key].append(row)
                    if row.error:
                        print(f"  failed: {row.error[:300]}", file=sys.stderr)
            section.rows = [merge_rows(rows[c.key]) for c in runnable]
            if args.profile and any(c.key == provider.cloudq_batch for c in runnable):
                print(f"profiling the cloudq worker on {provider.key} ...", file=sys.stderr)
                section.spots = profile(provider, n, workdir, args.idle_wait)
    except Exception as exc:  # noqa: BLE001 - the emulator not starting ends this section only
        section.error = f"{type(exc).__name__}: {exc}"
        print(f"  {provider.key} failed: {section.error[:500]}", file=sys.stderr)
    section.seconds = time.perf_counter() - started
    return section


def main(argv: list[str] | None = None) -> list[Section]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--providers", default=",".join(PROVIDERS), help="comma-separated: sqs,pubsub,servicebus"
    )
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--latency-n", type=int, default=30)
    parser.add_argument(
        "--sweeps",
        type=int,
        default=3,
        help="times every contender is run, alternately forward and backward; medians reported",
    )
    parser.add_argument("--reps", type=int, default=1, help="passes of scenario 2 per sweep")
    parser.add_argument("--cold-reps", type=int, default=5)
    parser.add_argument(
        "--idle-wait", type=float, default=2.0, help="seconds idle before the RSS is read"
    )
    parser.add_argument("--only", default="", help="comma-separated contender keys")
    parser.add_argument("--out", type=Path, default=BENCH / "REPORT.md")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the cloudq worker in an extra pass"
    )
    args = parser.parse_args(argv)
    if args.sweeps < 1 or args.reps < 1:
        parser.error("--sweeps and --reps take 1 or more")
    # Latency tasks are spread evenly over the sweeps: round up, so the report states the count run.
    args.latency_n = -(-args.latency_n // args.sweeps) * args.sweeps
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join(["uv run python bench/run.py", *given])
    names = [name for name in args.providers.split(",") if name]
    unknown = [name for name in names if name not in PROVIDERS]
    if unknown:
        parser.error(
            f"unknown provider(s) {', '.join(unknown)}: choose from {', '.join(PROVIDERS)}"
        )
    keys = [k for k in args.only.split(",") if k]
    known = {c.key for p in PROVIDERS.values() for c in p.contenders}
    if set(keys) - known:
        parser.error(f"unknown contender(s) {', '.join(sorted(set(keys) - known))}")

    started, load0 = time.perf_counter(), os.getloadavg()[0]
    sections = []
    for name in names:
        provider = PROVIDERS[name]
        if keys and not any(c.key in keys for c in provider.contenders):
            continue
        sections.append(run_provider(provider, keys, args))
    ran = [section.provider.key for section in sections]
    cold = cold_start(args.cold_reps, ran) if args.cold_reps else {}
    chart = ""
    if not args.no_chart and write_chart(sections, args.out.with_name("report.png")):
        chart = "report.png"
    elapsed = time.perf_counter() - started
    load = (load0, os.getloadavg()[0])
    write_report(
        sections,
        cold,
        command,
        args.n,
        args.latency_n,
        args.out,
        chart,
        elapsed,
        load,
        args.reps,
        args.sweeps,
    )
    print(args.out.read_text())
    print(f"bench finished in {elapsed:.0f} s", file=sys.stderr)
    return sections


if __name__ == "__main__":
    main()
