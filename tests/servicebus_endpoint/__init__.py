"""A Service Bus test endpoint: the part of Azure Service Bus that cloudq uses, on loopback.

Not part of the product. Microsoft's emulator needs Docker, and generic AMQP brokers stop at the
SDK's ``$cbs`` attach; this server (python-qpid-proton) lets the real ``azure-servicebus`` SDK
run unchanged with the emulator's form of connection string (``Endpoint=sb://127.0.0.1:PORT;
SharedAccessKeyName=...;SharedAccessKey=...;UseDevelopmentEmulator=true;``).

Implemented, to the documented Service Bus AMQP behaviour: SASL ANONYMOUS/PLAIN, ``$cbs``
put-token, queues and ``<queue>/$deadletterqueue``, send (single and batched), peek-lock and
receive-and-delete, complete / abandon / release / dead-letter with reason and description,
lock expiry and redelivery with delivery counts, max delivery count to dead letter
(``MaxDeliveryCountExceeded``), ``ForwardDeadLetteredMessagesTo``, scheduled messages, and on
``<queue>/$management``: schedule-message, cancel-scheduled-message, renew-lock, peek-message,
update-disposition. The administration REST API (HTTPS) creates, reads (with runtime counts),
updates and deletes queues.

Sessions (see ``store``), without session state.

Not implemented: session state, topics/subscriptions/rules, transactions, duplicate detection,
TTL and expiry, deferral, partitioning, quotas, and authentication (tokens are accepted unchecked).

Run it with ``python -m tests.servicebus_endpoint --port N`` (see ``__main__``) or from the
session fixture in ``tests/fixtures/servicebus_endpoint.py``.
"""
