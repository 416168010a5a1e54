"""Submitting the dashboard's forms as a browser does: the CSRF cookie from a page load, the
token from its hidden field, same-origin POSTs."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from tests.dashboard.harness import Dashboard, Reply

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def session(dash: Dashboard, path: str = "/workers") -> tuple[str, str]:
    """(cookie header, token) from loading ``path``."""
    page = dash.get(path)
    assert page.status in (200, 404), page.text
    cookie = page.headers["set-cookie"].split(";", 1)[0]
    match = TOKEN.search(page.text)
    assert match, "no CSRF field in the page"
    return cookie, match.group(1)


def post_form(
    dash: Dashboard,
    path: str,
    fields: list[tuple[str, str]],
    cookie: str | None,
    token: str | None,
) -> Reply:
    body = list(fields) + ([("csrf_token", token)] if token is not None else [])
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": dash.url}
    if cookie is not None:
        headers["Cookie"] = cookie
    return dash.request("POST", path, data=urlencode(body).encode(), headers=headers)
