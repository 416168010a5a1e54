"""Run by scripts/check-dist with the Python of a fresh virtualenv holding only the built files.

It must not see the checkout: it is run from a temporary folder, and fails if ``cloudq`` would
be imported from anywhere but that virtualenv. It starts its own moto server on 127.0.0.1 and
stops it (and the worker) whatever happens. Each wait has a timeout: no sleeping and hoping.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path.cwd()
BIN = Path(sys.executable).parent
APP_MODULE = """\
import os
from pathlib import Path

from cloudq import App

app = App("distapp", broker=os.environ["DIST_BROKER"])


@app.task(time_limit=30)
def touch(path: str, text: str) -> None:
    Path(path).write_text(text)
"""


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"check-dist: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except OSError:
        return False
    return True


def stop(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def check_worker(distapp: ModuleType, sqs: Any, prefix: str) -> None:
    """A real worker process on moto SQS runs one task, then stops cleanly on SIGTERM."""
    with (HERE / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            [str(BIN / "cloudq"), "-A", "distapp", "worker", "-Q", "default", "-c", "1"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:

            def queue_exists() -> bool:
                return f"{prefix}default" in str(sqs.list_queues(QueueNamePrefix=prefix))

            wait_for(queue_exists, "the worker to create its queue (see worker.log)")
            by_worker = HERE / "by-worker.txt"
            distapp.touch.delay(str(by_worker), "worker")
            wait_for(by_worker.exists, "the worker to run the task (see worker.log)")
        finally:
            stop(worker)
    if worker.returncode != 0:
        raise SystemExit(f"check-dist: the worker exited {worker.returncode} on SIGTERM")
    print("check-dist: a worker on moto SQS ran a task and stopped cleanly")


def check_lambda(distapp: ModuleType, sqs: Any, prefix: str) -> None:
    """The Lambda handler on one record, as the event source mapping would hand it over."""
    from cloudq_sqs import lambda_handler

    by_lambda = HERE / "by-lambda.txt"
    distapp.touch.delay(str(by_lambda), "lambda")
    url = sqs.get_queue_url(QueueName=f"{prefix}default")["QueueUrl"]
    got = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=1,
        WaitTimeSeconds=5,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    if len(got) != 1:
        raise SystemExit(f"check-dist: expected one message on {prefix}default, got {got}")
    message = got[0]
    record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {
            name: {"stringValue": value.get("StringValue"), "dataType": value["DataType"]}
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{prefix}default",
        "awsRegion": "us-east-1",
    }

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 30_000

    reply: Any = lambda_handler(distapp.app)({"Records": [record]}, Context())
    if reply != {"batchItemFailures": []} or by_lambda.read_text() != "lambda":
        raise SystemExit(f"check-dist: the Lambda handler answered {reply!r}")
    print("check-dist: the Lambda handler ran one record")


def check_deploy_package() -> None:
    """The deploy kit shipped in the wheel, packaged from this (non-editable) environment."""
    command = ["deploy", "package", "--target", "lambda", "-o", "lambda.zip"]
    subprocess.run([str(BIN / "cloudq"), "-A", "distapp", *command], check=True)
    names = set(zipfile.ZipFile(HERE / "lambda.zip").namelist())
    needed = {"handler.py", "distapp.py", "cloudq/__init__.py", "cloudq_sqs/lambda_handler.py"}
    if not needed <= names:
        raise SystemExit(f"check-dist: the Lambda zip lacks {sorted(needed - names)}")
    print("check-dist: deploy package --target lambda zipped the app, cloudq and the kit")


def main() -> None:
    import cloudq

    where = Path(cloudq.__file__).resolve()
    if Path(sys.prefix).resolve() not in where.parents:
        raise SystemExit(f"check-dist: cloudq imported from {where}, not from the fresh virtualenv")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: answers(f"{endpoint}/moto-api/"), "the moto server")
        prefix = f"dist{uuid.uuid4().hex[:6]}-"
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="check",
            AWS_SECRET_ACCESS_KEY="check",
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",
            DIST_BROKER=f"sqs://?prefix={prefix}",
        )
        (HERE / "distapp.py").write_text(APP_MODULE)
        sys.path.insert(0, str(HERE))
        import boto3
        import distapp  # type: ignore[import-not-found]

        sqs = boto3.client("sqs", region_name="us-east-1")
        check_worker(distapp, sqs, prefix)
        check_lambda(distapp, sqs, prefix)
        distapp.app.close()
        check_deploy_package()
    finally:
        stop(moto)


if __name__ == "__main__":
    main()
