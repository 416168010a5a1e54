"""HTTP basic auth on every route, Flower's ``--basic-auth user:password[,user2:password2]``.

Credentials are compared in constant time against every configured user, so neither a name nor a
password can be found a character at a time. The user's name goes into the request's state for
the action log.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from cloudq.errors import ConfigurationError

REALM = "cloudq dashboard"
ANONYMOUS = "anonymous (loopback, no --basic-auth)"
"""The name actions are logged under when the dashboard runs without auth (loopback only)."""


def parse_basic_auth(text: str) -> dict[str, str]:
    """``user:password[,user2:password2]`` as {user: password}; a clear error otherwise."""
    users: dict[str, str] = {}
    for pair in (p.strip() for p in text.split(",")):
        user, sep, password = pair.partition(":")
        if not sep or not user or not password:
            raise ConfigurationError(
                "--basic-auth takes user:password (several: user1:pw1,user2:pw2), "
                "each with a non-empty name and password"
            )
        users[user] = password
    return users


def authenticate(header: str | None, users: Mapping[str, str]) -> str | None:
    """The user an ``Authorization: Basic`` header proves, or None."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    given_user, sep, given_password = decoded.partition(":")
    if not sep:
        return None
    found = None
    for user, password in users.items():  # every user compared: no early exit to time
        same_user = hmac.compare_digest(user.encode(), given_user.encode())
        same_password = hmac.compare_digest(password.encode(), given_password.encode())
        if same_user and same_password:
            found = user
    return found


class BasicAuth:
    """ASGI middleware: 401 unless the request carries a configured user's credentials.

    With no users (loopback only, see ``cli``) every request passes as ``ANONYMOUS``."""

    def __init__(self, app: ASGIApp, users: Mapping[str, str]) -> None:
        self.app = app
        self.users = dict(users)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.users:
            header = _header(scope, b"authorization")
            user = authenticate(header, self.users)
            if user is None:
                await _unauthorized(send)
                return
        else:
            user = ANONYMOUS
        scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _unauthorized(send: Send) -> None:
    body = b"authentication required"
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"www-authenticate", f'Basic realm="{REALM}", charset="UTF-8"'.encode()),
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
