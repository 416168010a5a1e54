"""The practical limit: a raw boto3 loop.

Producer: SendMessageBatch of 10 (``batch``) or one SendMessage per task (``single``).
Worker (``python -m bench.contenders.raw_boto3``): ReceiveMessage 10 with long polling, run the
task, DeleteMessageBatch.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from bench.contenders.common import queue, record, region


def _client() -> Any:
    import boto3

    return boto3.client("sqs", region_name=region())


class Producer:
    def __init__(self, batch: bool = True) -> None:
        self.client = _client()
        self.url = self.client.create_queue(QueueName=queue())["QueueUrl"]
        self.batch = batch

    def send(self, t0s: list[float]) -> None:
        if not self.batch:
            for t0 in t0s:
                self.client.send_message(QueueUrl=self.url, MessageBody=json.dumps({"t0": t0}))
            return
        for start in range(0, len(t0s), 10):
            self.client.send_message_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(i), "MessageBody": json.dumps({"t0": t0})}
                    for i, t0 in enumerate(t0s[start : start + 10])
                ],
            )

    def close(self) -> None:
        self.client.close()


def worker_cmd() -> list[str]:
    return [sys.executable, "-m", "bench.contenders.raw_boto3"]


def serve() -> None:
    client = _client()
    url = client.create_queue(QueueName=queue())["QueueUrl"]
    while True:
        messages = client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=10
        ).get("Messages", [])
        if not messages:
            continue
        for message in messages:
            record(json.loads(message["Body"])["t0"])
        client.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )


if __name__ == "__main__":
    serve()
