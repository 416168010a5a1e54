"""CSRF protection on every state-changing request.

Pages: a token in a cookie (``SameSite=Strict``, ``HttpOnly``) signed with this process's secret
and bound to the user, repeated in each form's hidden field (double submit): another site can
make the browser send the cookie and the basic-auth credentials, but cannot read the token to
put it in the form. API calls (``/api/...``) may instead send the ``X-Requested-With`` header: a
cross-site page cannot add a custom header without a CORS preflight, which this server never
grants, so Flower-style scripts keep working with one extra header. On top of either, a request
whose ``Origin`` is another site, or that the browser marks ``Sec-Fetch-Site: cross-site``, is
refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloudq.logsafe import get_logger

logger = get_logger("cloudq.dashboard.csrf")

COOKIE = "cloudq_csrf"
FIELD = "csrf_token"
"""The hidden form field (and ``X-CSRF-Token`` header) that must repeat the cookie."""
API_HEADER = b"x-requested-with"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_FORM_BYTES = 1_000_000
"""A form bigger than this is refused: the dashboard's forms hold ids, never data."""


class Signer:
    """Tokens ``nonce.signature`` over the user and a random nonce, with a per-process secret
    (a restart asks the browser for a new token, which the next page load sets)."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def _sign(self, user: str, nonce: str) -> str:
        message = f"{user}\0{nonce}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def new(self, user: str) -> str:
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._sign(user, nonce)}"

    def valid(self, token: str | None, user: str) -> bool:
        if not token or "." not in token:
            return False
        nonce, _, signature = token.partition(".")
        return hmac.compare_digest(signature, self._sign(user, nonce))


def parse_form(body: bytes) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body; undecodable bytes are replaced."""
    return parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)


def _headers(scope: Scope) -> dict[bytes, str]:
    return {bytes(k).lower(): bytes(v).decode("latin-1") for k, v in scope.get("headers", [])}


def _cookie(headers: dict[bytes, str]) -> str | None:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get(b"cookie", ""))
    except Exception:  # noqa: BLE001 - a malformed Cookie header is no token
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


def _cross_site(scope: Scope, headers: dict[bytes, str]) -> str | None:
    """Why the request comes from another site, or None."""
    fetch_site = headers.get(b"sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return f"Sec-Fetch-Site is {fetch_site}"
    origin = headers.get(b"origin")
    if origin is not None:
        host = headers.get(b"host", "")
        expected = f"{scope.get('scheme', 'http')}://{host}"
        if origin != expected:
            return f"Origin {origin} is not {expected}"
    return None


class Csrf:
    """ASGI middleware (inside ``BasicAuth``): sets the token, checks it on unsafe methods and
    puts it in ``request.state.csrf`` for the templates."""

    def __init__(self, app: ASGIApp, signer: Signer | None = None) -> None:
        self.app = app
        self.signer = signer or Signer()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        user = str(state.get("user", ""))
        headers = _headers(scope)
        cookie = _cookie(headers)
        fresh = not self.signer.valid(cookie, user)
        token = self.signer.new(user) if fresh else str(cookie)
        state["csrf"] = token
        if scope["method"] not in SAFE_METHODS:
            body, why = await self._check(scope, receive, headers, None if fresh else cookie)
            if why is not None:
                logger.warning(
                    "refused %s %s from %s: %s", scope["method"], scope["path"], user, why
                )
                await _forbidden(send, f"refused (CSRF): {why}")
                return
            receive = _replay(body, receive)

        async def send_with_cookie(message: Message) -> None:
            if fresh and message["type"] == "http.response.start":
                value = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
                message.setdefault("headers", []).append((b"set-cookie", value.encode()))
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    async def _check(
        self, scope: Scope, receive: Receive, headers: dict[bytes, str], cookie: str | None
    ) -> tuple[bytes, str | None]:
        """(the body, read whole; why it is refused or None)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", "the client went away"
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_FORM_BYTES:
                return b"", f"the body is over {MAX_FORM_BYTES} bytes"
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        why = _cross_site(scope, headers)
        if why is not None:
            return body, why
        if scope["path"].startswith("/api/") and headers.get(API_HEADER):
            return body, None
        given = headers.get(b"x-csrf-token")
        if given is None and headers.get(b"content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            given = next(iter(parse_form(body).get(FIELD, [])), None)
        if cookie is None:
            return body, "no valid CSRF cookie (reload the page)"
        if given is None or not hmac.compare_digest(given, cookie):
            return body, "the CSRF token is missing or does not match (reload the page)"
        return body, None


def _replay(body: bytes, original: Receive) -> Receive:
    """The body read by the check, once; then the client's own messages (a disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await original()

    return receive


async def _forbidden(send: Send, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
