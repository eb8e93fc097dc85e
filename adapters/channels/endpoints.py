"""Where each provider is reached. All None in production (the providers' own URLs); set
to point the gateway and connectors at a proxy, or at local fakes in tests."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec


class ProviderEndpoints(msgspec.Struct, frozen=True, kw_only=True):
    telegram_api_base: str | None = None  # Bot API server
    slack_api_base: str | None = None  # Slack Web API base URL
    discord_api_base: str | None = None  # Discord REST base, …/api/v10
    discord_gateway_url: str | None = None  # Discord gateway WebSocket
    discord_cdn_base: str | None = None  # stands in for https://cdn.discordapp.com (attachments)
    whatsapp_business_api_base: str | None = None  # Graph API base with its version, …/v21.0
    teams_login_base: str | None = None  # Azure AD's token endpoint base (https://login.microsoftonline.com)
    teams_openid_url: str | None = None  # the Bot Connector's OpenID metadata (login.botframework.com)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ProviderEndpoints:
        return cls(
            telegram_api_base=environ.get("MOLTBOT_TELEGRAM_API_BASE") or None,
            slack_api_base=environ.get("MOLTBOT_SLACK_API_BASE") or None,
            discord_api_base=environ.get("MOLTBOT_DISCORD_API_BASE") or None,
            discord_gateway_url=environ.get("MOLTBOT_DISCORD_GATEWAY_URL") or None,
            discord_cdn_base=environ.get("MOLTBOT_DISCORD_CDN_BASE") or None,
            whatsapp_business_api_base=environ.get("MOLTBOT_WHATSAPP_BUSINESS_API_BASE") or None,
            teams_login_base=environ.get("MOLTBOT_TEAMS_LOGIN_BASE") or None,
            teams_openid_url=environ.get("MOLTBOT_TEAMS_OPENID_URL") or None,
        )
