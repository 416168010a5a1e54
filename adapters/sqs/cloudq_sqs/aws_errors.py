"""Reading botocore's errors and environment, for every AWS module of the adapter (SQS, S3,
DynamoDB). Pure functions over the exception's ``response`` (botocore's shape): nothing here
imports boto3.
"""

from __future__ import annotations

AWS_REGION_ENV = ("AWS_REGION", "AWS_DEFAULT_REGION")
"""Where a region the URL does not name comes from, first set wins (boto3's own variables)."""


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (``""`` for any other error)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error")
        if isinstance(error, dict):
            return str(error.get("Code", ""))
    return ""


def api_name(operation: str) -> str:
    """The API's own name of a boto3 method, for messages: ``send_message`` -> ``SendMessage``."""
    return "".join(part.title() for part in operation.split("_"))
