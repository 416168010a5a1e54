"""The ASGI app: the routes behind basic auth, CSRF checks and strict security headers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloudq.dashboard import api, pages
from cloudq.dashboard.auth import BasicAuth
from cloudq.dashboard.csrf import Csrf, Signer
from cloudq.dashboard.views import Dash

if TYPE_CHECKING:
    from cloudq.app import App

SECURITY_HEADERS = [
    # No inline script or style anywhere: what a message says cannot run even if it got through.
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).extend(SECURITY_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(
    app: App, users: Mapping[str, str], extra_queues: Sequence[str] = (), follow_events: bool = True
) -> Starlette:
    """The dashboard of ``app``; ``users`` empty means no auth (the CLI allows that on loopback
    only). ``follow_events``: start the event follower with the server."""
    dash = Dash(app, list(extra_queues))

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if follow_events:
            dash.observer.start()
        try:
            yield
        finally:
            dash.observer.close()

    web = Starlette(
        routes=[*api.routes, *pages.routes],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(BasicAuth, users=users),
            Middleware(Csrf, signer=Signer()),
        ],
        lifespan=lifespan,
    )
    web.state.dash = dash
    return web
