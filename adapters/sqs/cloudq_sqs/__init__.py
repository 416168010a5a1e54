"""cloudqueue-tasks-sqs: Amazon SQS as a cloudq broker (``sqs://``), the Lambda handler,
DynamoDB results (``dynamodb://``) and S3 claim checks (``s3://``).

Importing this package does not import boto3; opening a broker, backend or store does.
"""

from cloudq_sqs.broker import PartialSendError, QueueNotFoundError, SQSBroker, open_sqs_broker
from cloudq_sqs.lambda_handler import lambda_handler, process_event

__all__ = [
    "PartialSendError",
    "QueueNotFoundError",
    "SQSBroker",
    "lambda_handler",
    "open_sqs_broker",
    "process_event",
]
