"""AWS Lambda entry point of a `cloudq deploy package --target lambda` zip: ``handler.handler``.

The app is named by ``CLOUDQ_APP`` (as ``cloudq -A`` takes it; the Terraform module sets it) and
loaded at init, outside any invocation, so only a cold start pays for the import.
"""

import logging
import os

from cloudq.pool import load_app
from cloudq_sqs import lambda_handler

if not os.environ.get("CLOUDQ_APP"):
    raise RuntimeError("set CLOUDQ_APP to the app module, as `cloudq -A` takes it")
# Lambda's root logger shows WARNING and up; cloudq's task log lines are INFO.
logging.getLogger("cloudq").setLevel(os.environ.get("CLOUDQ_LOG_LEVEL", "INFO"))

handler = lambda_handler(load_app(os.environ["CLOUDQ_APP"]))
