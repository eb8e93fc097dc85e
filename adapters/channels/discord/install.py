""" "Add to server": the OAuth2 install of the deployment's Discord application's bot in a
server. The gateway's generic install flow (single-use state bound to the browser, the
inbox confirmed) asks this module where to send the person and what the returned code
installs: a connection for that server, with the deployment's bot token, whose session keeps
to that server's channels (``guild_id`` in its secret).

The code is exchanged at ``POST /oauth2/token`` (httpx: hikari's exchange does not return
the server the bot was added to)."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx

from adapters.channels.endpoints import ProviderEndpoints
from adapters.channels.errors import InstallRejected, ProviderUnreachable
from adapters.channels.installs import Installed, OAuthApp

AUTHORIZE_URL = "https://discord.com/oauth2/authorize"
DEFAULT_API_BASE = "https://discord.com/api/v10"
# What the connector needs in a server: view channels, send messages (and in threads), add
# reactions, attach files, read message history (the history brought in on connect).
PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 38) | (1 << 6) | (1 << 15) | (1 << 16)


class DiscordInstaller:
    def authorize_url(self, app: OAuthApp, state: str) -> str:
        query = {
            "client_id": app.client_id, "scope": "bot", "permissions": str(PERMISSIONS),
            "response_type": "code", "redirect_uri": app.redirect_uri, "state": state,
        }  # fmt: skip
        return f"{AUTHORIZE_URL}?{urlencode(query)}"

    async def finish(self, app: OAuthApp, code: str, endpoints: ProviderEndpoints) -> Installed:
        bot_token = getattr(app, "bot_token", None)  # the deployment's DiscordApp has one
        if not bot_token:
            raise InstallRejected("This deployment has no Discord bot token (MOLTBOT_DISCORD_BOT_TOKEN).")
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": app.redirect_uri}
        url = f"{(endpoints.discord_api_base or DEFAULT_API_BASE).rstrip('/')}/oauth2/token"
        try:
            async with httpx.AsyncClient(timeout=15) as http:
                response = await http.post(url, data=form, auth=(app.client_id, app.client_secret))
        except httpx.HTTPError as exc:
            raise ProviderUnreachable(f"Discord cannot be reached: {exc!r}") from None
        if response.status_code >= 500:
            raise ProviderUnreachable(f"Discord answered {response.status_code}; try again in a moment.")
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        answer = answer if isinstance(answer, dict) else {}
        guild = answer.get("guild")
        if response.status_code >= 400 or not isinstance(guild, dict) or not guild.get("id"):
            reason = answer.get("error_description") or answer.get("error")
            raise InstallRejected(
                f"Discord did not add the bot to a server ({reason or response.status_code}):"
                " start again from the channels page and pick a server you manage."
            )
        guild_id = str(guild["id"])
        secret = {"token": bot_token, "guild_id": guild_id}
        return Installed(str(guild.get("name") or guild_id), secret, team_id=guild_id, app_id=app.client_id)
