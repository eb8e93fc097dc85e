"""Settings, read once from the command line and the environment, then passed down.

Where the servers are, in order of precedence:
1. ``MOLTBOT_NATS_URL`` / ``MOLTBOT_DATABASE_URL`` (external servers);
2. ``<data dir>/stack.json``, written by a running ``moltbot up``.

How a process signs in to NATS: ``MOLTBOT_NATS_USER`` / ``MOLTBOT_NATS_PASSWORD`` or
``MOLTBOT_NATS_CREDS`` (a ``.creds`` file) when set, for whatever role the process runs;
else the embedded stack's generated users (``<data dir>/nats/credentials.json``), each role
its own. ``MOLTBOT_NATS_TLS_CA`` names the CA of ``tls://`` servers.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import msgspec

from adapters.billing.config import METER_EVENT, STRIPE_API, StripeConfig
from adapters.channels.endpoints import ProviderEndpoints
from adapters.channels.signal.config import SignalSetup
from adapters.mail.factory import mailer as make_mailer
from adapters.mail.outbox import outbox_folder
from adapters.media.s3 import S3Config, S3MediaStore
from adapters.media.store import LocalMediaStore, MediaStore
from adapters.nats.connection import NatsAccess, NatsLogin
from adapters.push.config import PUSH_SERVICES, PushConfig, valid_subject
from adapters.push.vapid import load_or_create, parse_private_key
from domain.billing import parse_prices
from domain.envelope import Plan
from domain.mail import Mailer
from domain.plans import Catalog, parse_catalog
from gateway.context import DiscordApp, SlackApp
from gateway.limits import Limits

if TYPE_CHECKING:
    from adapters.agent.choice import ModelChoice
    from adapters.vault.cipher import Keyring
    from gateway.oidc import OidcConfig
    from moltbot.roles import GatewayOptions

DEFAULT_DATA_DIR = Path(".moltbot")
STACK_FILE = "stack.json"
NATS_CREDENTIALS_FILE = Path("nats") / "credentials.json"  # under the data dir
LogFormat = Literal["console", "json"]


class NoStackError(Exception):
    """No servers to talk to: nothing running in the data folder and no URLs in the environment."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: Path
    nats_url: str | None = None
    database_url: str | None = None
    # MOLTBOT_NATS_USER / _PASSWORD or MOLTBOT_NATS_CREDS: this process's NATS login.
    nats_user: str | None = None
    nats_password: str | None = None
    nats_creds: Path | None = None
    nats_tls_ca: Path | None = None  # MOLTBOT_NATS_TLS_CA
    streams_file: Path
    plans_file: Path  # MOLTBOT_PLANS_FILE: the plan catalog (plans.yaml beside streams.yaml)
    log_format: LogFormat = "console"
    log_level: str = "info"
    gateway_port: int = 8000
    jwt_key_file: Path
    # External OIDC access tokens: off unless MOLTBOT_OIDC_JWKS_URL is set (see oidc_config).
    oidc_jwks_url: str | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    # The deployment's Anthropic key; without one the built-in offline model answers.
    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None  # another endpoint (a proxy, a local fake)
    agent_debounce: float = 1.0  # seconds a burst of messages gets before one answer
    # MOLTBOT_AGENT_INJECTION_CHECK=1: besides the rules, the model screens each message the
    # agent would answer (one short call per message; domain/agent.py INJECTION_CHECK_SYSTEM)
    agent_injection_check: bool = False
    endpoints: ProviderEndpoints = ProviderEndpoints()  # MOLTBOT_TELEGRAM_API_BASE and the like
    # The Personal Bridge's Signal (adapters/channels/signal/config.py): MOLTBOT_SIGNAL_CLI, the
    # signal-cli program it starts (default: signal-cli on the PATH); or MOLTBOT_SIGNAL_RPC, a
    # signal-cli daemon already running (unix:/path, tcp://host:port, http://host:port), with
    # MOLTBOT_SIGNAL_ACCOUNT, an account that daemon has, to use instead of linking one.
    signal: SignalSetup = SignalSetup()
    public_url: str | None = None  # where people reach the gateway (OAuth redirects)
    slack_client_id: str | None = None  # the deployment's Slack app ("Add to Slack")
    slack_client_secret: str | None = None
    slack_signing_secret: str | None = None
    discord_client_id: str | None = None  # the deployment's Discord application ("Add to server")
    discord_client_secret: str | None = None
    discord_bot_token: str | None = None
    media_dir: Path  # where attachments are kept (local object storage)
    media_s3: S3Config | None = None  # MOLTBOT_MEDIA_S3_*: an S3-compatible bucket instead
    # Channel credentials at rest (adapters/vault): keys from the environment, else the key file.
    vault_keys: str | None = None  # MOLTBOT_VAULT_KEYS: "id:base64key,..."
    vault_key_id: str | None = None  # MOLTBOT_VAULT_KEY_ID: the key new secrets are sealed under
    vault_key_file: Path  # used when MOLTBOT_VAULT_KEYS is unset; created on first use
    limits: Limits = Limits()  # MOLTBOT_LIMIT_<NAME>: rate limits and stream caps (gateway/limits.py)
    # MOLTBOT_TRUSTED_PROXIES: comma-separated addresses or networks of the proxies in front
    # of the gateway, whose X-Forwarded-For names the client (rate limits per address).
    trusted_proxies: tuple[str, ...] = ()
    ops_token: str | None = None  # MOLTBOT_OPS_TOKEN: bearer token for /metrics and /readyz
    # Billing with Stripe (docs/billing.md): off unless MOLTBOT_STRIPE_SECRET_KEY is set (see billing).
    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None  # MOLTBOT_STRIPE_WEBHOOK_SECRET: whsec_…
    stripe_api_base: str | None = None  # MOLTBOT_STRIPE_API_BASE: a local fake; None: Stripe's API
    stripe_prices: str | None = None  # MOLTBOT_STRIPE_PRICES: pro=price_…,team=price_…
    stripe_meter_event: str | None = None  # MOLTBOT_STRIPE_METER_EVENT: the overage's meter
    billing_interval: float = 300.0  # MOLTBOT_BILLING_INTERVAL: seconds between overage reports
    # Account mail (docs/accounts.md): MOLTBOT_SMTP_URL, else .eml files in <data>/mail/outbox/.
    smtp_url: str | None = None
    mail_from: str = "Moltbot Cloud <no-reply@moltbot.localhost>"  # MOLTBOT_MAIL_FROM
    # MOLTBOT_EMAIL_VERIFICATION: "required" keeps channels and billing shut until verified.
    email_verification: Literal["required", "optional"] = "optional"
    # Browser push (docs/operations.md): the VAPID key from MOLTBOT_VAPID_PRIVATE_KEY, else the key
    # file (made on first use); the subject push services may contact; where endpoints may point.
    vapid_private_key: str | None = None
    vapid_key_file: Path
    vapid_subject: str | None = None  # MOLTBOT_VAPID_SUBJECT: mailto:… or https://…
    push_services: tuple[str, ...] = PUSH_SERVICES  # MOLTBOT_PUSH_SERVICES: comma-separated hosts

    @classmethod
    def load(cls, environ: Mapping[str, str], *, data_dir: str | None = None) -> Settings:
        directory = Path(data_dir or environ.get("MOLTBOT_DATA_DIR") or DEFAULT_DATA_DIR)
        default_format: LogFormat = "console" if sys.stderr.isatty() else "json"
        log_format = environ.get("MOLTBOT_LOG_FORMAT", default_format)
        if log_format not in ("console", "json"):
            raise ValueError(f"MOLTBOT_LOG_FORMAT must be 'console' or 'json', not {log_format!r}")
        for retired in ("MOLTBOT_OIDC_TENANT_CLAIM", "MOLTBOT_OIDC_ROLE_CLAIM"):
            if environ.get(retired):
                raise ValueError(
                    f"{retired} is no longer read: an OIDC token's tenant and role come from the"
                    " identity's link (POST /v1/me/identities) and the members read model; unset it."
                )
        settings = cls(
            data_dir=directory.resolve(),
            nats_url=environ.get("MOLTBOT_NATS_URL") or None,
            database_url=environ.get("MOLTBOT_DATABASE_URL") or None,
            nats_user=environ.get("MOLTBOT_NATS_USER") or None,
            nats_password=environ.get("MOLTBOT_NATS_PASSWORD") or None,
            nats_creds=Path(creds) if (creds := environ.get("MOLTBOT_NATS_CREDS")) else None,
            nats_tls_ca=Path(ca) if (ca := environ.get("MOLTBOT_NATS_TLS_CA")) else None,
            streams_file=Path(environ.get("MOLTBOT_STREAMS_FILE") or _bundled_streams_file()),
            plans_file=Path(environ.get("MOLTBOT_PLANS_FILE") or bundled_plans_file()),
            log_format=log_format,  # type: ignore[arg-type]
            log_level=environ.get("MOLTBOT_LOG_LEVEL", "info").lower(),
            gateway_port=int(environ.get("MOLTBOT_GATEWAY_PORT", "8000")),
            jwt_key_file=Path(
                environ.get("MOLTBOT_JWT_KEY_FILE") or directory.resolve() / "gateway" / "jwt-ed25519.pem"
            ),
            oidc_jwks_url=environ.get("MOLTBOT_OIDC_JWKS_URL") or None,
            oidc_issuer=environ.get("MOLTBOT_OIDC_ISSUER") or None,
            oidc_audience=environ.get("MOLTBOT_OIDC_AUDIENCE") or None,
            anthropic_api_key=environ.get("MOLTBOT_ANTHROPIC_API_KEY")
            or environ.get("ANTHROPIC_API_KEY")
            or None,
            anthropic_base_url=environ.get("MOLTBOT_ANTHROPIC_BASE_URL") or None,
            agent_debounce=float(environ.get("MOLTBOT_AGENT_DEBOUNCE", "1.0")),
            agent_injection_check=environ.get("MOLTBOT_AGENT_INJECTION_CHECK", "").lower()
            in ("1", "true", "yes"),
            endpoints=ProviderEndpoints.from_environ(environ),
            signal=SignalSetup.from_environ(environ),
            public_url=(environ.get("MOLTBOT_PUBLIC_URL") or "").rstrip("/") or None,
            slack_client_id=environ.get("MOLTBOT_SLACK_CLIENT_ID") or None,
            slack_client_secret=environ.get("MOLTBOT_SLACK_CLIENT_SECRET") or None,
            slack_signing_secret=environ.get("MOLTBOT_SLACK_SIGNING_SECRET") or None,
            discord_client_id=environ.get("MOLTBOT_DISCORD_CLIENT_ID") or None,
            discord_client_secret=environ.get("MOLTBOT_DISCORD_CLIENT_SECRET") or None,
            discord_bot_token=environ.get("MOLTBOT_DISCORD_BOT_TOKEN") or None,
            media_dir=Path(environ.get("MOLTBOT_MEDIA_DIR") or directory.resolve() / "media"),
            media_s3=_s3_config(environ),
            vault_keys=environ.get("MOLTBOT_VAULT_KEYS") or None,
            vault_key_id=environ.get("MOLTBOT_VAULT_KEY_ID") or None,
            vault_key_file=Path(
                environ.get("MOLTBOT_VAULT_KEY_FILE") or directory.resolve() / "vault" / "keys.json"
            ),
            limits=Limits.from_environ(environ),
            ops_token=environ.get("MOLTBOT_OPS_TOKEN") or None,
            trusted_proxies=tuple(
                p.strip() for p in environ.get("MOLTBOT_TRUSTED_PROXIES", "").split(",") if p.strip()
            ),
            stripe_secret_key=environ.get("MOLTBOT_STRIPE_SECRET_KEY") or None,
            stripe_webhook_secret=environ.get("MOLTBOT_STRIPE_WEBHOOK_SECRET") or None,
            stripe_api_base=(environ.get("MOLTBOT_STRIPE_API_BASE") or "").rstrip("/") or None,
            stripe_prices=environ.get("MOLTBOT_STRIPE_PRICES") or None,
            stripe_meter_event=environ.get("MOLTBOT_STRIPE_METER_EVENT") or None,
            billing_interval=_positive_seconds(environ, "MOLTBOT_BILLING_INTERVAL", 300.0),
            smtp_url=environ.get("MOLTBOT_SMTP_URL") or None,
            mail_from=environ.get("MOLTBOT_MAIL_FROM") or "Moltbot Cloud <no-reply@moltbot.localhost>",
            email_verification=_email_verification(environ),
            vapid_private_key=environ.get("MOLTBOT_VAPID_PRIVATE_KEY") or None,
            vapid_key_file=Path(
                environ.get("MOLTBOT_VAPID_KEY_FILE") or directory.resolve() / "push" / "vapid-private.pem"
            ),
            vapid_subject=environ.get("MOLTBOT_VAPID_SUBJECT") or None,
            push_services=tuple(
                host.strip().lower()
                for host in (environ.get("MOLTBOT_PUSH_SERVICES") or ",".join(PUSH_SERVICES)).split(",")
                if host.strip()
            ),
        )
        settings.oidc_config()  # refuse an incomplete or unsafe OIDC setup at start
        settings.billing()  # and an incomplete Stripe setup
        settings.mailer()  # and a malformed MOLTBOT_SMTP_URL
        if settings.vapid_private_key:  # and a VAPID key or subject that cannot be used
            settings.push_config()
        else:
            settings.push_subject()
        return settings

    def oidc_config(self) -> OidcConfig | None:
        """The external identity provider to accept access tokens from, or ``None`` (off)."""
        if not self.oidc_jwks_url:
            if self.oidc_issuer or self.oidc_audience:
                raise ValueError("MOLTBOT_OIDC_ISSUER/AUDIENCE are set: set MOLTBOT_OIDC_JWKS_URL too.")
            return None
        if not (self.oidc_issuer and self.oidc_audience):
            raise ValueError(
                "MOLTBOT_OIDC_JWKS_URL is set: set MOLTBOT_OIDC_ISSUER and MOLTBOT_OIDC_AUDIENCE too."
            )
        from gateway.oidc import OidcConfig  # only when on: it pulls in the gateway's imports

        return OidcConfig(
            jwks_url=self.oidc_jwks_url,
            issuer=self.oidc_issuer,
            audience=self.oidc_audience,
        )

    def __repr__(self) -> str:
        """Every setting except the secrets (keys, client secrets), which show as ***."""
        shown = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            secret = name in _SECRETS or (name == "media_s3" and value is not None)
            shown.append(f"{name}={'***' if secret and value is not None else repr(value)}")
        return f"Settings({', '.join(shown)})"

    def billing(self) -> StripeConfig | None:
        """Stripe, when MOLTBOT_STRIPE_SECRET_KEY is set (then the webhook secret and the prices
        must be too); None: billing is off and operators set plans."""
        if not self.stripe_secret_key:
            given = [
                name
                for name, value in (
                    ("MOLTBOT_STRIPE_WEBHOOK_SECRET", self.stripe_webhook_secret),
                    ("MOLTBOT_STRIPE_PRICES", self.stripe_prices),
                    ("MOLTBOT_STRIPE_API_BASE", self.stripe_api_base),
                    ("MOLTBOT_STRIPE_METER_EVENT", self.stripe_meter_event),
                )
                if value
            ]
            if given:
                raise ValueError(f"{given[0]} is set: set MOLTBOT_STRIPE_SECRET_KEY too (or unset it).")
            return None
        if not self.stripe_webhook_secret:
            raise ValueError(
                "MOLTBOT_STRIPE_SECRET_KEY is set: set MOLTBOT_STRIPE_WEBHOOK_SECRET too (whsec_…, from the"
                " webhook endpoint in Stripe's dashboard or `stripe listen`)."
            )
        if not self.stripe_prices:
            raise ValueError("MOLTBOT_STRIPE_SECRET_KEY is set: set MOLTBOT_STRIPE_PRICES too (pro=price_…).")
        return StripeConfig(
            secret_key=self.stripe_secret_key,
            webhook_secret=self.stripe_webhook_secret,
            prices=parse_prices(self.stripe_prices, _paid_plans()),
            api_base=self.stripe_api_base or STRIPE_API,
            meter_event=self.stripe_meter_event or METER_EVENT,
        )

    def inbox_url(self) -> str:
        """Where people reach the web inbox: the public URL, else the local gateway."""
        return self.public_url or f"http://127.0.0.1:{self.gateway_port}"

    def slack_app(self) -> SlackApp | None:
        """The Slack app for "Add to Slack", when its three secrets are all set."""
        if not (self.slack_client_id and self.slack_client_secret and self.slack_signing_secret):
            return None
        public = self.inbox_url()
        return SlackApp(
            client_id=self.slack_client_id,
            client_secret=self.slack_client_secret,
            signing_secret=self.slack_signing_secret,
            redirect_uri=f"{public}/v1/channels/slack/oauth/callback",
        )

    def discord_app(self) -> DiscordApp | None:
        """The Discord application for "Add to server", when its three secrets are all set."""
        if not (self.discord_client_id and self.discord_client_secret and self.discord_bot_token):
            return None
        return DiscordApp(
            client_id=self.discord_client_id,
            client_secret=self.discord_client_secret,
            bot_token=self.discord_bot_token,
            redirect_uri=f"{self.inbox_url()}/v1/channels/discord/oauth/callback",
        )

    def gateway_options(self, *, models: ModelChoice, keyring: Keyring, media: MediaStore) -> GatewayOptions:
        """The gateway role's options (``run_gateway``'s keywords): these settings, and the
        models, vault keys and media store its caller made."""
        return {
            "oidc": self.oidc_config(),
            "models": models,
            "keyring": keyring,
            "endpoints": self.endpoints,
            "media": media,
            "slack_app": self.slack_app(),
            "discord_app": self.discord_app(),
            "public_url": self.public_url,
            "limits": self.limits,
            "trusted_proxies": self.trusted_proxies,
            "ops_token": self.ops_token,
            "billing": self.billing(),
            "catalog": self.catalog(),
            "mailer": self.mailer(),
            "email_verification": self.email_verification,
            "push": self.push_config(),
        }

    def push_subject(self) -> str:
        """Who runs this deployment, for push services: MOLTBOT_VAPID_SUBJECT, else the public
        https URL, else the sender address of account mail."""
        if self.vapid_subject:
            if not valid_subject(self.vapid_subject):
                raise ValueError(
                    f"MOLTBOT_VAPID_SUBJECT must be mailto:<address> or https://…, not {self.vapid_subject!r}"
                )
            return self.vapid_subject
        if self.public_url and self.public_url.startswith("https://"):
            return self.public_url
        sender = f"mailto:{parseaddr(self.mail_from)[1]}"
        return sender if valid_subject(sender) else "mailto:no-reply@moltbot.localhost"

    def push_config(self) -> PushConfig:
        """Browser push: the VAPID key (MOLTBOT_VAPID_PRIVATE_KEY, else the key file, made on
        first use), the subject, the push services subscriptions may point at."""
        if self.vapid_private_key:
            key = parse_private_key(self.vapid_private_key)
        else:
            key = load_or_create(self.vapid_key_file)
        return PushConfig(key=key, subject=self.push_subject(), services=self.push_services)

    def mailer(self) -> Mailer:
        """Account mail: the SMTP server of ``smtp_url``, else the data folder's outbox."""
        return make_mailer(self.smtp_url, outbox_folder(self.data_dir), self.mail_from)

    def catalog(self) -> Catalog:
        """The plan catalog (``plans_file``)."""
        return load_catalog(self.plans_file)

    def media_store(self) -> MediaStore:
        """Where attachments are kept: the S3-compatible bucket if configured, else the folder."""
        if self.media_s3 is not None:
            return S3MediaStore(self.media_s3)
        return LocalMediaStore(self.media_dir)

    @property
    def stack_file(self) -> Path:
        return self.data_dir / STACK_FILE

    def database(self) -> str:
        """The PostgreSQL URL alone, for commands that need no NATS, or :class:`NoStackError`."""
        if self.database_url:
            return self.database_url
        if self.stack_file.exists() and (url := json.loads(self.stack_file.read_text()).get("database_url")):
            return str(url)
        raise NoStackError(
            f"No running Moltbot stack in {self.data_dir}. Start one with `moltbot up"
            f" --data {self.data_dir}`, or set MOLTBOT_DATABASE_URL."
        )

    def servers(self) -> tuple[NatsAccess, str]:
        """(NATS servers and logins, database_url) of the stack to talk to, or :class:`NoStackError`."""
        nats_url, database_url = self.nats_url, self.database_url
        stack: dict[str, str] = {}
        if not (nats_url and database_url) and self.stack_file.exists():
            stack = json.loads(self.stack_file.read_text())
            nats_url = nats_url or stack.get("nats_url")
            database_url = database_url or stack.get("database_url")
        if not (nats_url and database_url):
            raise NoStackError(
                f"No running Moltbot stack in {self.data_dir}. Start one with `moltbot up"
                f" --data {self.data_dir}`, or set MOLTBOT_NATS_URL and MOLTBOT_DATABASE_URL."
            )
        return self.nats_access(nats_url, stack), database_url

    def nats_login(self) -> NatsLogin | None:
        """The login given to this process by the environment, if any."""
        if self.nats_creds is not None:
            return NatsLogin(creds_file=self.nats_creds)
        if self.nats_user:
            return NatsLogin(user=self.nats_user, password=self.nats_password)
        return None

    def nats_access(self, nats_url: str, stack: Mapping[str, str] | None = None) -> NatsAccess:
        """How each role signs in at ``nats_url``: the environment's login for every role,
        else the data folder's generated users (and the admin named in ``stack.json``)."""
        default = self.nats_login()
        if default is not None:
            return NatsAccess(nats_url, default=default, tls_ca_file=self.nats_tls_ca)
        logins: dict[str, NatsLogin] = {}
        users_file = self.data_dir / NATS_CREDENTIALS_FILE
        if users_file.exists():
            users = json.loads(users_file.read_text()).get("users", {})
            logins = {role: NatsLogin(user=role, password=password) for role, password in users.items()}
        if stack and stack.get("nats_user"):
            logins.setdefault(
                "admin", NatsLogin(user=stack["nats_user"], password=stack.get("nats_password"))
            )
        return NatsAccess(nats_url, logins, tls_ca_file=self.nats_tls_ca)


def _email_verification(environ: Mapping[str, str]) -> Literal["required", "optional"]:
    value = environ.get("MOLTBOT_EMAIL_VERIFICATION") or "optional"
    if value not in ("required", "optional"):
        raise ValueError(f"MOLTBOT_EMAIL_VERIFICATION must be 'required' or 'optional', not {value!r}")
    return value  # type: ignore[return-value]


def _positive_seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    """A number of seconds above zero from ``name``, else ``default``; ValueError names it."""
    given = environ.get(name)
    if not given:
        return default
    try:
        seconds = float(given)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, not {given!r}") from None
    if not seconds > 0:
        raise ValueError(f"{name} must be above zero, not {given!r}")
    return seconds


def _bundled_streams_file() -> Path:
    return Path(__file__).resolve().parent.parent / "streams.yaml"


def _paid_plans() -> frozenset[str]:
    """The plans of the bundled plans.yaml that cost money (the ones Stripe can sell)."""
    catalog = load_catalog(bundled_plans_file())
    known = set(get_args(Plan))
    return frozenset(p for p, spec in catalog.plans.items() if spec.monthly_price_cents > 0 and p in known)


def bundled_plans_file() -> Path:
    return Path(__file__).resolve().parent.parent / "plans.yaml"


def load_catalog(path: Path) -> Catalog:
    """The plan catalog in ``path``; ValueError says what is wrong with it."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read the plan catalog {path}: {exc.strerror}") from None
    return parse_catalog(text)


_SECRETS = frozenset(
    {
        "anthropic_api_key",
        "vault_keys",
        "slack_client_secret",
        "slack_signing_secret",
        "database_url",
        "ops_token",
        "nats_password",
        "stripe_secret_key",
        "stripe_webhook_secret",
        "vapid_private_key",
    }
)


def _s3_config(environ: Mapping[str, str]) -> S3Config | None:
    """MOLTBOT_MEDIA_S3_ENDPOINT, _BUCKET, _ACCESS_KEY_ID, _SECRET_ACCESS_KEY (+ _REGION, _PREFIX)."""
    endpoint = environ.get("MOLTBOT_MEDIA_S3_ENDPOINT")
    if not endpoint:
        return None
    missing = [
        name
        for name in ("BUCKET", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY")
        if not environ.get(f"MOLTBOT_MEDIA_S3_{name}")
    ]
    if missing:
        raise ValueError(f"MOLTBOT_MEDIA_S3_ENDPOINT is set; also set MOLTBOT_MEDIA_S3_{missing[0]}")
    return S3Config(
        endpoint=endpoint,
        bucket=environ["MOLTBOT_MEDIA_S3_BUCKET"],
        region=environ.get("MOLTBOT_MEDIA_S3_REGION") or "us-east-1",
        access_key_id=environ["MOLTBOT_MEDIA_S3_ACCESS_KEY_ID"],
        secret_access_key=environ["MOLTBOT_MEDIA_S3_SECRET_ACCESS_KEY"],
        prefix=environ.get("MOLTBOT_MEDIA_S3_PREFIX") or "",
    )
