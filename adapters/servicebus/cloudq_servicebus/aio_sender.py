"""Service Bus sends awaited on ``azure.servicebus.aio`` (``cloudq.aio``'s native hand-over).

One ``ServiceBusClient`` (aio) per event loop, opened lazily by the first send on it, with a
sender per queue attached on first use; ``cloudq.aio.aclose(app)`` closes them on their loop.
Messages are the sync adapter's own (``ServiceBusBroker._outgoing``: ids, sessions on FIFO
queues, application properties, ``scheduled_enqueue_time_utc`` for a delay), batched by bytes
the same way, and checked first by the broker's ``check_send``: an awaited send refuses,
schedules and fails as ``broker.send`` does.

The async client needs an async credential: a connection string always works; a namespace
with ``DefaultAzureCredential`` needs ``azure.identity.aio`` (and aiohttp); a credential given
as a sync object has no async form, and those sends take ``cloudq.aio``'s thread pool instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cloudq.adapters.base import OutgoingMessage
from cloudq.adapters.skeleton import AsyncSenderBase
from cloudq.errors import BrokerError, MessageTooLarge
from cloudq.logsafe import get_logger

if TYPE_CHECKING:
    from cloudq_servicebus.broker import AsyncSettings, ServiceBusBroker

logger = get_logger("cloudq.servicebus.aio")

__all__ = ["ServiceBusAsyncSender", "open_aio_sender"]


def open_aio_sender(
    broker: ServiceBusBroker, settings: AsyncSettings
) -> ServiceBusAsyncSender | None:
    """A sender for the running loop, or ``None`` if the credential has no async form."""
    from azure.servicebus.aio import ServiceBusClient

    if settings.connection_string:
        client = ServiceBusClient.from_connection_string(
            settings.connection_string, **settings.retry
        )
        return ServiceBusAsyncSender(broker, client)
    credential = settings.credential
    if credential is None:
        try:
            from azure.identity.aio import DefaultAzureCredential
        except ImportError as exc:  # azure-identity without its async extras (aiohttp)
            logger.info("Service Bus async sends use threads: %s", exc)
            return None
        credential = DefaultAzureCredential()
    elif not asyncio.iscoroutinefunction(getattr(credential, "get_token", None)):
        logger.info("Service Bus async sends use threads: the credential given is not async")
        return None
    assert settings.namespace is not None
    client = ServiceBusClient(settings.namespace, credential, **settings.retry)
    made = credential if settings.credential is None else None
    return ServiceBusAsyncSender(broker, client, made)


class ServiceBusAsyncSender(AsyncSenderBase["ServiceBusBroker"]):
    """The aio client of one event loop and its senders per queue (each used under its own
    ``asyncio.Lock``: an SDK sender takes one send at a time, as the sync adapter's do)."""

    def __init__(self, broker: ServiceBusBroker, client: Any, credential: Any = None) -> None:
        super().__init__(broker)
        self._client = client
        self._credential = credential
        """A credential made here, closed with the client."""
        self._senders: dict[str, tuple[Any, asyncio.Lock]] = {}

    async def _sender(self, queue: str) -> tuple[Any, asyncio.Lock]:
        entry = self._senders.get(queue)
        if entry is None:
            sdk = self._client.get_queue_sender(self.broker.physical_name(queue))
            entry = self._senders[queue] = (sdk, asyncio.Lock())
        return entry

    async def _send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        """Send in as few batches as fit (by bytes); a failure after a first batch went out
        raises naming how many were sent. A sender that failed is closed, the next send opens
        a fresh one."""
        outgoing = [self.broker._outgoing(queue, m) for m in messages]
        sent = 0
        entry = await self._sender(queue)
        sender, lock = entry

        async def run() -> None:
            nonlocal sent
            if len(outgoing) == 1:
                await sender.send_messages(outgoing[0])
                sent = 1
                return
            batch, count = await sender.create_message_batch(), 0
            for msg in outgoing:
                try:
                    batch.add_message(msg)
                except ValueError:  # MessageSizeExceededError: batch full
                    if not count:
                        raise
                    await sender.send_messages(batch)
                    sent += count
                    batch, count = await sender.create_message_batch(), 0
                    batch.add_message(msg)
                count += 1
            await sender.send_messages(batch)
            sent += count

        async with lock:
            try:
                await self._call("send", queue, run)
            except BrokerError as error:
                if not isinstance(error, MessageTooLarge):
                    await self._drop(queue, entry)
                    error = await self._plainly(queue, error)
                if sent:
                    raise BrokerError(
                        f"{error} ({sent} of {len(messages)} messages had been sent before the "
                        "error)"
                    ) from error
                raise error from error.__cause__

    async def _plainly(self, queue: str, error: BrokerError) -> BrokerError:
        """The sync adapter's hint for a link that failed on a missing queue (an
        administration API call: on a thread)."""
        if type(error) is not BrokerError:
            return error
        missing = await asyncio.to_thread(self.broker._missing_queue, "send", queue)
        return error if missing is None else missing

    async def _drop(self, queue: str, entry: tuple[Any, asyncio.Lock]) -> None:
        if self._senders.get(queue) is entry:
            del self._senders[queue]
        await _quietly(entry[0].close())

    async def aclose(self) -> None:
        senders, self._senders = list(self._senders.values()), {}
        await asyncio.gather(*(_quietly(sdk.close()) for sdk, _ in senders))
        await _quietly(self._client.close())
        if self._credential is not None:
            await _quietly(self._credential.close())


async def _quietly(closing: Any) -> None:
    try:
        await closing
    except Exception as exc:  # noqa: BLE001 - closing must not raise over the real error
        logger.debug("ignored while closing: %r", exc)
