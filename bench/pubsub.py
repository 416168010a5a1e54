"""Pub/Sub on the gcloud SDK's emulator: raw google-cloud-pubsub (streaming and sync), cloudq,
Celery + kombu's gcpubsub transport."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from bench.measure import Contender, Provider, environment

PROJECT = "cloudq-bench"

CONTENDERS = (
    Contender(
        "ps-raw-stream",
        "raw google-cloud-pubsub (batching publish, streaming pull)",
        "raw_pubsub",
        True,
        ("google.cloud.pubsub_v1",),
        mode="stream",
    ),
    Contender(
        "ps-raw-sync",
        "raw google-cloud-pubsub (Publish of 10, sync Pull 10 + Acknowledge)",
        "raw_pubsub",
        True,
        ("google.cloud.pubsub_v1",),
        mode="sync",
    ),
    Contender(
        "ps-raw-single",
        "raw google-cloud-pubsub (1 Publish/task, sync Pull)",
        "raw_pubsub",
        False,
        ("google.cloud.pubsub_v1",),
        mode="single",
    ),
    Contender("ps-cloudq-batch", "cloudq (send_envelopes)", "cloudq_app", True, ("cloudq_pubsub",)),
    Contender("ps-cloudq-delay", "cloudq (delay())", "cloudq_app", False, ("cloudq_pubsub",)),
    Contender(
        "ps-celery",
        "Celery + kombu gcpubsub (-c 4 threads)",
        "celery_app",
        False,
        ("celery", "google.cloud.monitoring_v3"),
        why_missing=(
            "kombu's gcpubsub transport imports google.cloud.monitoring_v3 when it loads "
            "(kombu's `gcpubsub` extra, package google-cloud-monitoring), which the dev "
            "dependency group does not install: `ImportError: cannot import name "
            "'monitoring_v3' from 'google.cloud'`"
        ),
    ),
)


def _fail(exc: BaseException) -> RuntimeError:
    """The fixture helpers fail or skip the way pytest does; outside pytest that is an error."""
    return RuntimeError(str(exc).strip() or type(exc).__name__)


@contextlib.contextmanager
def endpoint(workdir: Path) -> Iterator[str]:
    """The emulator jar started as the tests start it (their fixture's helpers), on a free
    loopback port; ``PUBSUB_EMULATOR_HOST`` points the SDK clients at it."""
    import pytest

    from tests.fixtures import pubsub_emulator as fixture
    from tests.fixtures.servers import stop_process

    try:
        java = fixture._java()
        jar = fixture._sdk_file(fixture.PUBSUB_JAR, "pubsub-emulator")
        emulator = fixture.start_emulator(
            "pubsub",
            lambda port: [
                java,
                *fixture.JVM_FLAGS,
                "-jar",
                jar,
                "--host=127.0.0.1",
                f"--port={port}",
            ],
            workdir,
        )
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        raise _fail(exc) from None
    try:
        with environment(
            PUBSUB_EMULATOR_HOST=emulator.host,
            GOOGLE_CLOUD_PROJECT=PROJECT,
            GOOGLE_APPLICATION_CREDENTIALS=None,
            GCLOUD_PROJECT=None,
            PUBSUB_PROJECT_ID=None,
            CLOUDQ_PUBSUB_PREFIX=None,
        ):
            yield f"gcloud SDK Pub/Sub emulator (`{Path(jar).name}`, {_java_version(java)})"
    finally:
        stop_process(emulator.proc)


def _java_version(java: str) -> str:
    import subprocess

    done = subprocess.run(
        [shutil.which(java) or java, "-version"], capture_output=True, text=True, check=False
    )
    first = (done.stderr or done.stdout).splitlines()
    return first[0].strip() if first else "java"


PROVIDER = Provider(
    key="pubsub",
    title="Pub/Sub (emulator)",
    contenders=CONTENDERS,
    endpoint=endpoint,
    cloudq_url=f"pubsub://{PROJECT}?prefix={{prefix}}",
    raws=("ps-raw-stream", "ps-raw-sync"),
    raw_single="ps-raw-single",
    cloudq_batch="ps-cloudq-batch",
    cloudq_delay="ps-cloudq-delay",
    peers=("ps-celery",),
    dists=(
        "google-cloud-pubsub",
        "grpcio",
        "cloudqueue-tasks-pubsub",
        "celery",
        "kombu",
        "google-cloud-monitoring",
    ),
    scale=3,
    notes=(
        "cloudq's adapter pulls synchronously (Pull of up to `max_batch`, default 10, then "
        "Acknowledge), so the sync raw loop makes the same calls; the streaming pull is the "
        "SDK's own throughput path. Ratios are given against both.",
        "Celery + kombu gcpubsub runs on the emulator as it is (the SDK clients kombu makes "
        "read PUBSUB_EMULATOR_HOST, and kombu skips the monitoring API there), but the transport "
        "imports google.cloud.monitoring_v3 when it loads: it needs google-cloud-monitoring "
        "(kombu's `gcpubsub` extra), which the dev dependency group does not install: a run "
        "that lists its version below had it installed by hand. Without it the row is listed "
        "as not run, with the ImportError.",
        "dramatiq has no Pub/Sub broker (none in dramatiq, none installed here): not run.",
    ),
)
