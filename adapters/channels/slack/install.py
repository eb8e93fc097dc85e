""" "Add to Slack": the OAuth v2 install of the deployment's Slack app in a workspace. The
gateway's generic install flow (state bound to the browser, the inbox confirmed) asks
this module where to send the person and what the code Slack returns installs."""

from __future__ import annotations

from adapters.channels.endpoints import ProviderEndpoints
from adapters.channels.installs import Installed, OAuthApp
from adapters.channels.slack.client import BOT_SCOPES, exchange_code, install_url


class SlackInstaller:
    def authorize_url(self, app: OAuthApp, state: str) -> str:
        return install_url(app.client_id, app.redirect_uri, state, BOT_SCOPES)

    async def finish(self, app: OAuthApp, code: str, endpoints: ProviderEndpoints) -> Installed:
        install = await exchange_code(
            app.client_id, app.client_secret, code, app.redirect_uri, api_base=endpoints.slack_api_base
        )
        secret = {
            "token": install.bot_token,
            "bot_user_id": install.bot_user_id,
            "signing_secret": app.signing_secret,
        }
        if install.authed_user_id:  # who installed it: what they write themselves is the owner answering
            secret["owner_user_id"] = install.authed_user_id
        return Installed(install.team_name, secret, team_id=install.team_id, app_id=install.app_id)
