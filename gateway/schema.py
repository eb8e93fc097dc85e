"""The gateway's own tables (accounts, sessions, widgets, webhooks...), made if missing: by
each gateway as it starts, and by ``moltbot events import`` before it restores a tenant's
accounts into a deployment whose gateway has not started yet."""

from __future__ import annotations

from adapters.postgres import audit
from adapters.postgres.database import Connection
from adapters.postgres.rate_counter import RATE_LIMITS_SQL
from adapters.push import subscriptions as push_subscriptions
from adapters.vault.store import ensure_confined_access
from gateway.credentials import CREDENTIALS_SQL
from gateway.oidc import IDENTITIES_SQL
from gateway.one_time_tokens import ONE_TIME_TOKENS_SQL
from gateway.routes.billing import BILLING_SQL
from gateway.routes.channels import OAUTH_STATES_SQL, WEBHOOKS_SQL
from gateway.routes.devices import PAIRING_CODES_SQL
from gateway.routes.messages import IDEMPOTENCY_SQL
from gateway.routes.webchat import WIDGETS_SQL
from gateway.sessions import SESSIONS_SQL
from gateway.two_factor import TWO_FACTOR_SQL
from projections.engine import ensure_core

GATEWAY_TABLES = (
    CREDENTIALS_SQL,
    SESSIONS_SQL,
    ONE_TIME_TOKENS_SQL,
    TWO_FACTOR_SQL,
    IDENTITIES_SQL,
    IDEMPOTENCY_SQL,
    WIDGETS_SQL,
    WEBHOOKS_SQL,
    OAUTH_STATES_SQL,
    PAIRING_CODES_SQL,
    BILLING_SQL,
    RATE_LIMITS_SQL,
)


async def ensure_gateway_tables(conn: Connection) -> None:
    """The roles and schemas the gateway's queries run under (row-level security), and its
    tables; safe when several processes start at once (``conn`` in autocommit)."""
    await ensure_core(conn)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('moltbot.gateway.schema'))")
        for sql in GATEWAY_TABLES:
            await conn.execute(sql)
    await audit.ensure_schema(conn)
    await ensure_confined_access(conn)  # tenants' secrets (BYOK, tokens)
    await push_subscriptions.ensure_schema(conn)
