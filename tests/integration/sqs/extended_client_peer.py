"""The other side of the claim-check round trip: a consumer and producer written with AWS's SQS
Extended Client for Python. Run as a subprocess: importing the library replaces
``boto3.Session`` process-wide, which must not leak into the test process.

``python extended_client_peer.py receive QUEUE_URL BUCKET`` prints the bodies it reads (JSON);
``python extended_client_peer.py send QUEUE_URL BUCKET < body`` sends stdin through S3.
"""

from __future__ import annotations

import json
import sys

import boto3
import sqs_extended_client  # noqa: F401 - patches boto3.Session with the extended client


def main() -> None:
    action, queue_url, bucket = sys.argv[1:4]
    sqs = boto3.session.Session().client("sqs", region_name="us-east-1")
    sqs.large_payload_support = bucket
    if action == "send":
        sqs.always_through_s3 = True
        sqs.send_message(QueueUrl=queue_url, MessageBody=sys.stdin.read())
        return
    sqs.delete_payload_from_s3 = True
    got = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=5, MessageAttributeNames=["All"]
    )
    bodies = []
    for message in got.get("Messages", []):
        bodies.append(message["Body"])
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    print(json.dumps(bodies))


if __name__ == "__main__":
    main()
