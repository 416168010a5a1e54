"""An app configured from the environment (CLOUDQ_BROKER_URL, CLOUDQ_RESULT_BACKEND), as a
deployed Lambda function's would be."""

from __future__ import annotations

from cloudq import App

app = App("lambda-app")


@app.task(name="double")
def double(x: int) -> int:
    return 2 * x
