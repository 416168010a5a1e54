"""Pub/Sub sends awaited on ``PublisherAsyncClient`` (``cloudq.aio``'s native hand-over).

One async GAPIC publisher per event loop (its gRPC ``aio`` channel belongs to that loop),
made lazily at the first send, the same way as the sync one (``PUBSUB_EMULATOR_HOST``, the
endpoint, Application Default Credentials), closed by ``cloudq.aio.aclose(app)``. A send is the
sync adapter's: the broker's ``check_send``, its messages (``_build``: ordering key of the
group on a FIFO queue, attributes, the task id, the size check), its split into requests of at
most 1000 messages and 10 MiB (``_requests``), the same retry policy (as ``AsyncRetry``) and the
same errors, a ``PartialSendError`` naming the messages not sent. Not the batching
``pubsub_v1.PublisherClient``: its futures, batching and flow control are another send path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cloudq.adapters.base import OutgoingMessage
from cloudq.adapters.skeleton import AsyncSenderBase
from cloudq.errors import BrokerError, ConfigurationError

if TYPE_CHECKING:
    from cloudq_pubsub.broker import PubSubBroker

__all__ = ["PubSubAsyncSender"]


class PubSubAsyncSender(AsyncSenderBase["PubSubBroker"]):
    """The async publisher of one event loop."""

    def __init__(
        self, broker: PubSubBroker, endpoint: str | None, retry_settings: dict[str, Any]
    ) -> None:
        super().__init__(broker)
        self._endpoint = endpoint
        self._retry_settings = retry_settings
        self._client: Any = None
        self._retry: Any = None

    def _publisher(self) -> Any:
        if self._client is None:
            from google.api_core.retry import AsyncRetry

            self._client = _make_async_publisher(self._endpoint)
            self._retry = AsyncRetry(**self._retry_settings)
        return self._client

    async def _send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        broker = self.broker
        topic, built = broker._build(queue, messages)
        client = self._publisher()
        sent = 0
        for request in broker._requests(built):

            async def publish(request: list[Any] = request) -> Any:
                return await client.publish(
                    request=broker._request(topic, request),
                    retry=self._retry,
                    timeout=broker.timeout,
                )

            try:
                await self._call("Publish", topic, publish)
            except BrokerError as exc:
                if not sent:
                    raise
                raise broker._partial(topic, sent, len(built), exc) from exc
            sent += len(request)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.transport.close()


def _make_async_publisher(endpoint: str | None) -> Any:
    """``cloudq_pubsub.broker._make_clients``'s publisher, async: on the emulator over
    plaintext gRPC, else with Application Default Credentials (and ``endpoint`` if given)."""
    from google.auth.exceptions import DefaultCredentialsError
    from google.pubsub_v1 import PublisherAsyncClient

    from cloudq_pubsub.broker import EMULATOR_CHANNEL_OPTIONS

    emulator = os.environ.get("PUBSUB_EMULATOR_HOST")
    if emulator and not endpoint:
        import grpc  # type: ignore[import-untyped, unused-ignore]
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcAsyncIOTransport

        channel = grpc.aio.insecure_channel(emulator, options=EMULATOR_CHANNEL_OPTIONS)
        return PublisherAsyncClient(transport=PublisherGrpcAsyncIOTransport(channel=channel))
    from google.api_core.client_options import ClientOptions

    client_options = ClientOptions(api_endpoint=endpoint) if endpoint else None
    try:
        return PublisherAsyncClient(client_options=client_options)
    except DefaultCredentialsError as exc:
        raise ConfigurationError(
            f"no Google credentials for Pub/Sub ({exc}): set up Application Default "
            "Credentials, or PUBSUB_EMULATOR_HOST for the emulator"
        ) from exc
