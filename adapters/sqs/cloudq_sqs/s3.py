"""``s3://BUCKET/PREFIX``: claim checks in S3, for task messages over SQS's size limit.

``put`` writes the body to ``PREFIX/KEY`` and returns ``s3://BUCKET/PREFIX/KEY``; the core sends
that URL on the queue instead of the body, and ``delete``s the object after the final ack. A
bucket lifecycle rule (Terraform) should still expire leftovers, e.g. bodies of dead letters.

``get`` and ``delete`` refuse URLs outside the store (``ObjectStoreClaimChecks``).

The bucket is Terraform's to create; ``?create=1`` creates it (tests and demos). Other options:
``?region=`` and ``?endpoint_url=``; otherwise boto3's environment applies (``AWS_ENDPOINT_URL_S3``
/ ``AWS_ENDPOINT_URL``, ``AWS_REGION``, the credential chain). boto3 is imported on open only.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from cloudq.adapters.urls import env_setting, redact_url, url_flag, url_options
from cloudq.claimcheck import ObjectStoreClaimChecks
from cloudq.errors import BrokerError, ClaimCheckMissing, ConfigurationError
from cloudq.logsafe import get_logger
from cloudq_sqs.aws_errors import AWS_REGION_ENV, api_name, error_code

__all__ = ["BucketNotFoundError", "ClaimCheckMissing", "S3ClaimCheckStore", "open_s3_store"]

logger = get_logger("cloudq.s3")

_URL_OPTIONS = frozenset({"region", "create", "endpoint_url"})
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_NO_SUCH_KEY = frozenset({"NoSuchKey", "404", "NotFound"})
_OWN_BUCKET = frozenset({"BucketAlreadyOwnedByYou"})


class BucketNotFoundError(BrokerError):
    """The S3 bucket is missing: Terraform creates it (or ``s3://BUCKET/PREFIX?create=1``)."""


class S3ClaimCheckStore(ObjectStoreClaimChecks):
    """One boto3 S3 client; thread-safe like it."""

    scheme = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        create: bool = False,
        client: Any = None,
    ) -> None:
        from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
            BotoCoreError,
            ClientError,
        )

        if not _BUCKET_NAME.fullmatch(bucket):
            raise ConfigurationError(
                f"{bucket!r} is not a valid S3 bucket name: 3 to 63 lowercase letters, digits, "
                "'.' and '-'"
            )
        super().__init__(bucket, prefix)
        self._errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
        self._region = region or env_setting(*AWS_REGION_ENV)
        if client is None:
            import boto3  # type: ignore[import-untyped, unused-ignore]

            try:
                client = boto3.session.Session().client(
                    "s3", region_name=self._region, endpoint_url=endpoint_url
                )
            except BotoCoreError as exc:
                raise ConfigurationError(
                    f"cannot create the S3 client ({exc}); set AWS_REGION or s3://...?region=..."
                ) from exc
        self._client = client
        if create:
            self.create_bucket()

    def _error(self, operation: str, url: str, exc: Exception) -> BrokerError:
        if error_code(exc) == "NoSuchBucket":
            return BucketNotFoundError(
                f"S3 bucket {self.bucket!r} does not exist ({api_name(operation)} of {url}): "
                "claim-check buckets are created by Terraform, or by the store itself with "
                f"{self.base_url}?create=1 (tests and demos)"
            )
        return BrokerError(f"S3 {api_name(operation)} of {url} failed: {exc}")

    def _call(self, operation: str, url: str, **params: Any) -> dict[str, Any]:
        """One S3 call; botocore errors become ``BrokerError`` naming operation and object."""
        try:
            response: dict[str, Any] = getattr(self._client, operation)(**params)
        except self._errors as exc:
            raise self._error(operation, url, exc) from exc
        return response

    def create_bucket(self) -> None:
        """Create the bucket if missing; one already ours is fine."""
        params: dict[str, Any] = {"Bucket": self.bucket}
        if self._region and self._region != "us-east-1":  # us-east-1 takes no constraint
            params["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        try:
            self._client.create_bucket(**params)
            logger.info("created S3 bucket %r", self.bucket)
        except self._errors as exc:
            if error_code(exc) not in _OWN_BUCKET:
                raise self._error("create_bucket", f"s3://{self.bucket}", exc) from exc

    # --- the object calls ----------------------------------------------------------------------
    def _upload(self, name: str, body: bytes, url: str) -> None:
        self._call("put_object", url, Bucket=self.bucket, Key=name, Body=body)

    def _download(self, name: str, url: str) -> bytes | None:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=name)
            body: bytes = response["Body"].read()
        except self._errors as exc:
            if error_code(exc) in _NO_SUCH_KEY:
                return None
            raise self._error("get_object", url, exc) from exc
        return body

    def _delete(self, name: str, url: str) -> None:
        """DeleteObject; S3 answers success for a missing key."""
        self._call("delete_object", url, Bucket=self.bucket, Key=name)

    def close(self) -> None:
        self._client.close()


def open_s3_store(url: str) -> S3ClaimCheckStore:
    """The ``cloudq.claimchecks`` entry point for ``s3://BUCKET/PREFIX?OPTIONS``.

    :param url: the bucket as host, the key prefix as path; options ``region``, ``create`` (1:
        create the bucket if it is missing), ``endpoint_url`` (moto).
    """
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or "@" in parts.netloc:
        raise ConfigurationError(
            f"expected s3://BUCKET/PREFIX[?region=..&create=1], got {redact_url(url)!r}; "
            "credentials, region and endpoint come from the AWS environment"
        )
    options = url_options(parts.query, _URL_OPTIONS, "s3")
    return S3ClaimCheckStore(
        parts.netloc,
        parts.path,
        region=options.get("region") or None,
        endpoint_url=options.get("endpoint_url") or None,
        create=url_flag("create", options.get("create", "0"), url),
    )
