"""The Litestar application: routers, error handlers, OpenAPI at /schema."""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from gateway.context import GatewayContext, context
from gateway.errors import HANDLERS
from gateway.nul_guard import refuse_nul
from gateway.routes.accounts import auth_router, me_router
from gateway.routes.agent_routing import routing_router
from gateway.routes.agents import agents_router
from gateway.routes.audit import audit_router
from gateway.routes.away import away_router
from gateway.routes.billing import billing_router
from gateway.routes.bridge import bridge_router
from gateway.routes.briefs import briefs_router
from gateway.routes.channels import channels_router
from gateway.routes.contacts import contacts_router
from gateway.routes.devices import devices_router
from gateway.routes.digest import digest_router
from gateway.routes.drafts import drafts_router
from gateway.routes.erasure import erasure_router
from gateway.routes.export import export_router
from gateway.routes.follow_ups import follow_ups_router
from gateway.routes.health import health_router
from gateway.routes.imports import imports_router
from gateway.routes.inbox import inbox_router
from gateway.routes.media import media_router
from gateway.routes.members import invitations_router, members_router
from gateway.routes.memory import memory_router
from gateway.routes.messages import messages_router
from gateway.routes.preferences import preferences_router
from gateway.routes.push import push_router
from gateway.routes.realtime import realtime_router
from gateway.routes.recovery import me_recovery_router, recovery_router
from gateway.routes.security import security_router
from gateway.routes.senders import senders_router
from gateway.routes.web import index, manifest, service_worker, static_router
from gateway.routes.webchat import webchat_router
from gateway.security_headers import security_headers

MAX_BODY_BYTES = 1024 * 1024
# The largest WebSocket message a client may send: a subscribe, a ping or a visitor's
# message of 4,000 characters (24 KB even if every one is \u-escaped). The server refuses
# a bigger frame (close 1009) before reading it whole, authenticated or not.
MAX_WS_MESSAGE_BYTES = 32 * 1024


def create_app(ctx: GatewayContext) -> Litestar:
    app = Litestar(
        route_handlers=[
            health_router,
            auth_router,
            me_router,
            recovery_router,
            me_recovery_router,
            security_router,
            members_router,
            invitations_router,
            audit_router,
            erasure_router,
            inbox_router,
            away_router,
            imports_router,
            export_router,
            messages_router,
            drafts_router,
            media_router,
            routing_router,
            agents_router,
            memory_router,
            billing_router,
            channels_router,
            senders_router,
            follow_ups_router,
            briefs_router,
            contacts_router,
            digest_router,
            devices_router,
            bridge_router,
            webchat_router,
            realtime_router,
            preferences_router,
            push_router,
            index,
            service_worker,
            manifest,
            static_router,
        ],
        dependencies={"ctx": Provide(context, sync_to_thread=False)},
        exception_handlers=HANDLERS,
        before_request=refuse_nul,
        before_send=[security_headers(https=(ctx.public_url or "").startswith("https://"))],
        openapi_config=OpenAPIConfig(
            title="Moltbot Cloud API",
            version="1.0.0",
            description="One AI assistant across all your messaging apps. Errors are"
            ' {"error", "detail", "field"?}. Commands answer 202 with the event id and seq;'
            " any GET takes ?min_seq=N to read its own writes.",
            path="/schema",
        ),
        request_max_body_size=MAX_BODY_BYTES,
        # Litestar's own logging set-up would replace the root handler: its records, and
        # uvicorn's, go through the structlog one (moltbot/logs.py).
        logging_config=None,
        debug=False,
    )
    app.state.ctx = ctx
    return app
