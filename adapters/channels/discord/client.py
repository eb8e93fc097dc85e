"""Discord's REST API through hikari: whose a bot token is (``GET /users/@me``), and the
REST app every connection's client shares."""

from __future__ import annotations

import hikari
import msgspec
from hikari.impl import HTTPSettings, HTTPTimeoutSettings

from adapters.channels.errors import ProviderUnreachable, TokenRejected

DEFAULT_MAX_RATE_LIMIT = 5.0  # seconds hikari may wait out a rate limit itself; longer ones defer the send


class BotIdentity(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    username: str
    display_name: str


def clean_token(token: str) -> str:
    token = token.strip()
    if token.lower().startswith("bot "):  # pasted with the Authorization scheme
        token = token[4:].strip()
    return token


def is_token_shaped(token: str) -> bool:
    return bool(token) and not any(char.isspace() for char in token) and token.count(".") == 2


def rest_app(
    api_base: str | None,
    *,
    max_rate_limit: float = DEFAULT_MAX_RATE_LIMIT,
    max_retries: int = 1,
    timeout: float = 30.0,
) -> hikari.RESTApp:
    return hikari.RESTApp(
        url=api_base,
        max_rate_limit=max_rate_limit,
        max_retries=max_retries,
        http_settings=HTTPSettings(timeouts=HTTPTimeoutSettings(total=timeout)),
    )


async def validate_token(token: str, *, api_base: str | None = None) -> BotIdentity:
    """The bot a token belongs to (``GET /users/@me``); raises TokenRejected or ProviderUnreachable.

    ``api_base`` is the REST base with its version, e.g. ``https://discord.com/api/v10``.
    """
    token = clean_token(token)
    if not is_token_shaped(token):
        raise TokenRejected(
            "This is not a Discord bot token: the Developer Portal (Bot → Reset Token) gives tokens"
            " in three parts separated by dots"
        )
    app = rest_app(api_base, max_retries=0, timeout=15.0)
    await app.start()
    try:
        async with app.acquire(token, hikari.TokenType.BOT) as rest:
            me = await rest.fetch_my_user()
    except hikari.UnauthorizedError:
        raise TokenRejected("Discord does not accept this bot token") from None
    except hikari.HTTPError as exc:
        raise ProviderUnreachable(f"Discord could not check the token just now: {exc}") from None
    finally:
        await app.close()
    return BotIdentity(id=int(me.id), username=me.username, display_name=me.global_name or me.username)


async def connect(token: str, *, api_base: str | None = None) -> tuple[BotIdentity, str]:
    """:func:`validate_token` for a person connecting (a refusal says where tokens come
    from); the bot and the token as it is kept."""
    token = token.strip().removeprefix("Bot ").strip()
    try:
        return await validate_token(token, api_base=api_base), token
    except TokenRejected as exc:
        detail = f"{exc}. Copy it again from the Developer Portal (Bot → Reset Token)."
        raise TokenRejected(detail, field="bot_token") from None
