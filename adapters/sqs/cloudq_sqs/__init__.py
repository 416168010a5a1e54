"""cloudq-sqs: Amazon SQS as a cloudq broker (``sqs://``).

Importing this package does not import boto3; opening a broker does.
"""

from cloudq_sqs.broker import PartialSendError, QueueNotFoundError, SQSBroker, open_sqs_broker

__all__ = ["PartialSendError", "QueueNotFoundError", "SQSBroker", "open_sqs_broker"]
