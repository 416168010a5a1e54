"""The practical limits on Pub/Sub: raw google-cloud-pubsub, no task library.

``$BENCH_MODE`` picks the pair of producer and worker:

- ``stream``: the SDK's own throughput path. Producer: ``PublisherClient.publish`` futures
  (client-side batching, then every future waited for); worker: a streaming pull
  (``SubscriberClient.subscribe``) whose callback runs the task and acks.
- ``sync``: the calls cloudq's adapter makes. Producer: one Publish of 10 messages per request;
  worker: Pull of 10, run, Acknowledge of the batch.
- ``single``: one Publish per message (what ``delay()`` does), the ``sync`` worker.

The GAPIC clients of ``sync`` and ``single`` talk plaintext gRPC to ``$PUBSUB_EMULATOR_HOST``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Any

from bench.contenders.common import queue, record

BATCH = 10


def mode() -> str:
    return os.environ.get("BENCH_MODE", "sync")


def project() -> str:
    return os.environ.get("GOOGLE_CLOUD_PROJECT", "cloudq-bench")


def _gapic() -> tuple[Any, Any]:
    """GAPIC publisher and subscriber on the emulator (or Application Default Credentials)."""
    from google.pubsub_v1 import PublisherClient, SubscriberClient

    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if not host:
        return PublisherClient(), SubscriberClient()
    import grpc  # type: ignore[import-untyped, unused-ignore]
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    return (
        PublisherClient(transport=PublisherGrpcTransport(channel=grpc.insecure_channel(host))),
        SubscriberClient(transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host))),
    )


def _paths() -> tuple[str, str]:
    return f"projects/{project()}/topics/{queue()}", f"projects/{project()}/subscriptions/{queue()}"


def _body(t0: float) -> bytes:
    return json.dumps({"t0": t0}).encode()


class Producer:
    def __init__(self, batch: bool = True) -> None:
        from google.api_core import exceptions

        del batch  # the mode says how to send
        self.mode = mode()
        self.topic, sub = _paths()
        self.gapic, subscriber = _gapic()
        for create, kwargs in (
            (self.gapic.create_topic, {"name": self.topic}),
            (subscriber.create_subscription, {"name": sub, "topic": self.topic}),
        ):
            with contextlib.suppress(exceptions.AlreadyExists):
                create(request=kwargs)
        subscriber.transport.close()
        self.streaming: Any = None
        if self.mode == "stream":
            from google.cloud import pubsub_v1

            self.streaming = pubsub_v1.PublisherClient()

    def send(self, t0s: list[float]) -> None:
        if self.streaming is not None:
            for future in [self.streaming.publish(self.topic, _body(t0)) for t0 in t0s]:
                future.result()
            return
        from google.pubsub_v1 import types

        size = BATCH if self.mode == "sync" else 1
        for start in range(0, len(t0s), size):
            messages = [types.PubsubMessage(data=_body(t0)) for t0 in t0s[start : start + size]]
            self.gapic.publish(topic=self.topic, messages=messages)

    def close(self) -> None:
        """Channels and the batching client closed, so nothing of theirs runs beside the
        contenders measured after this one in the same process."""
        self.gapic.transport.close()
        if self.streaming is not None:
            self.streaming.stop()


def worker_cmd() -> list[str]:
    return [sys.executable, "-m", "bench.contenders.raw_pubsub"]


def serve_streaming(sub: str) -> None:
    from google.cloud import pubsub_v1

    def callback(message: Any) -> None:
        record(json.loads(message.data)["t0"])
        message.ack()

    subscriber = pubsub_v1.SubscriberClient()
    subscriber.subscribe(sub, callback).result()


def serve_sync(sub: str) -> None:
    from google.api_core import exceptions

    _, subscriber = _gapic()
    while True:
        try:
            response = subscriber.pull(
                request={"subscription": sub, "max_messages": BATCH}, timeout=10, retry=None
            )
        except exceptions.DeadlineExceeded:
            continue
        received = response.received_messages
        if not received:
            continue
        for message in received:
            record(json.loads(message.message.data)["t0"])
        subscriber.acknowledge(subscription=sub, ack_ids=[m.ack_id for m in received])


if __name__ == "__main__":
    _, subscription = _paths()
    if mode() == "stream":
        serve_streaming(subscription)
    else:
        serve_sync(subscription)
