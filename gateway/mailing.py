"""Account mail from the gateway: rendered from its template, sent in the background.

A request never waits for mail (and so never tells by its timing whether a mail went out:
``POST /v1/auth/password-reset`` answers alike for every address). A mail that cannot be
sent is logged with its kind, never its token. Links point at the web inbox, with the token
in the URL's fragment, which browsers never send to a server or in a Referer.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog

from adapters.mail.templates import render
from domain.mail import MailKind

if TYPE_CHECKING:
    from litestar import Request

    from gateway.context import GatewayContext

log = structlog.get_logger()

PRODUCT = "Moltbot Cloud"


def link(ctx: GatewayContext, request: Request[Any, Any, Any], fragment: str) -> str:
    """The web inbox's address with ``#fragment``: the public URL, else the one asked on."""
    base = ctx.public_url or str(request.base_url).rstrip("/")
    return f"{base}/#{fragment}"


def send_later(ctx: GatewayContext, kind: MailKind, to: str, values: dict[str, str]) -> None:
    """Render the mail now and send it in the background (kept until sent)."""
    mail = render(kind, to=to, values={"product": PRODUCT, **values})
    if ctx.mailer is None:
        log.warning("mail_not_sent", kind=kind, reason="no mailer configured")
        return
    mailer = ctx.mailer

    async def deliver() -> None:
        try:
            await mailer.send(mail)
        except Exception as exc:  # logged: the request it came from has long answered
            log.error("mail_failed", kind=kind, error=type(exc).__name__, detail=str(exc)[:200])

    task = asyncio.create_task(deliver(), name=f"mail-{kind}")
    ctx.background.add(task)
    task.add_done_callback(ctx.background.discard)
