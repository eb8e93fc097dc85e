"""Who may publish and subscribe to what on NATS: one user per process role.

The table below is the single source: ``render_authorization`` turns it into the
nats-server ``authorization { users = [...] }`` block that the embedded servers load and
``moltbot nats users`` prints for a deployment. Every role has its own reply inbox
(``_INBOX.<role>.>``, set as the client's ``inbox_prefix`` in ``connection.py``), so no
role can read another's replies. Only ``admin`` (``moltbot up``'s bootstrap, ``moltbot
streams apply``, the CLI, an operator's ``nats`` CLI) may create, change, purge or delete
streams.

Subjects of the JetStream API that the roles use (nats-server 2.15):
``$JS.API.STREAM.INFO.<stream>``, ``$JS.API.DIRECT.GET.<stream>[.<subject>]``,
``$JS.API.CONSUMER.CREATE.<stream>[.<name>]`` (without a name: ephemeral only),
``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>``, ``$JS.API.CONSUMER.DELETE.<stream>.<consumer>``,
``$JS.API.CONSUMER.INFO.<stream>.<consumer>`` and acknowledgements on
``$JS.ACK.<stream>.<consumer>.>``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

ADMIN = "admin"
GATEWAY = "gateway"
PROJECTIONS = "projections"
AGENT = "agent"
OUTBOX = "outbox"
NOTIFIER = "notifier"
INBOX = "_INBOX"

# Changing a stream is the admin's alone, whatever an allow list above it says.
_STREAM_ADMIN = (
    "$JS.API.STREAM.CREATE.>",
    "$JS.API.STREAM.UPDATE.>",
    "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>",
    "$JS.API.STREAM.MSG.DELETE.>",
    "$JS.API.STREAM.SNAPSHOT.>",
    "$JS.API.STREAM.RESTORE.>",
    "$JS.API.ACCOUNT.>",
    "$JS.API.SERVER.>",
    "$SYS.>",
)


@dataclass(frozen=True)
class Permissions:
    """A role's subject permissions (nats-server semantics: a deny wins over an allow)."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    publish_deny: tuple[str, ...] = _STREAM_ADMIN
    subscribe_deny: tuple[str, ...] = field(default=())
    # May answer requests it received (publish to their reply subjects, once, for a while).
    allow_responses: bool = False


def connector_role(kind: str) -> str:
    """The user a connector of channel ``kind`` signs in as (``connector-telegram``)."""
    return f"connector-{kind}"


def inbox_prefix(role: str) -> str:
    """The reply-subject prefix of a role's connection; only that role may subscribe to it."""
    return INBOX if role == ADMIN else f"{INBOX}.{role}"


def _reads_events() -> tuple[str, ...]:
    """Reading the log: stream info, direct gets, and replay through ephemeral consumers.

    Consumer names are server-made for ephemeral readers, so deleting them cannot be told
    apart by subject from deleting a durable one: a reader may delete an EVENTS consumer.
    Creating without a name creates an ephemeral consumer only (never a durable).
    """
    return (
        "$JS.API.INFO",
        "$JS.API.STREAM.INFO.EVENTS",
        "$JS.API.DIRECT.GET.EVENTS",
        "$JS.API.DIRECT.GET.EVENTS.>",
        "$JS.API.CONSUMER.CREATE.EVENTS",
        "$JS.API.CONSUMER.MSG.NEXT.EVENTS.*",
        "$JS.API.CONSUMER.DELETE.EVENTS.*",
    )


_APPENDS = ("ev.>",)
# Every process that seals or opens personal fields drops a tenant's data keys when told
# (adapters/vault/sealing.py); the gateway tells, when a tenant is erased.
_SHREDDED = ("keys.shredded.*",)
_DEAD_LETTERS = ("dlq.>",)


def _durable(stream: str, consumer: str) -> tuple[str, ...]:
    """Pulling from and acknowledging one durable consumer."""
    return (f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}", f"$JS.ACK.{stream}.{consumer}.>")


def _own_inbox(role: str) -> tuple[str, ...]:
    return (f"{inbox_prefix(role)}.>",)


def _connector(kind: str) -> Permissions:
    """A connector: its commands, its sessions' leases (keys ``<kind>.<connection>``),
    the typing signals for its channel, appending what its provider reports, the pairing
    codes its sessions show (``live.<tenant>.qr.<connection>``), and answering the sends
    relayed to a session it holds (``bridge.<kind>.<connection>.send``, WhatsApp's)."""
    role = connector_role(kind)
    lease_keys = f"$KV.connector_leases.{kind}.>"
    return Permissions(
        publish=(
            *_reads_events(),
            *_APPENDS,
            *_DEAD_LETTERS,
            *_durable("COMMANDS", role),
            f"bridge.{kind}.>",  # a relayed kind hands its sends to whoever holds the session
            "$JS.API.STREAM.INFO.KV_connector_leases",
            f"$JS.API.DIRECT.GET.KV_connector_leases.{lease_keys}",
            lease_keys,
            "live.*.qr.*",
        ),
        subscribe=(*_own_inbox(role), f"live.*.typing.{kind}.*", f"bridge.{kind}.*.send", *_SHREDDED),
        allow_responses=True,
    )


def _fixed_roles() -> dict[str, Permissions]:
    return {
        GATEWAY: Permissions(
            # Commands from people become events; live signals go out to their tenant's clients.
            # It holds the bridge tunnels: it answers the sends of the devices' connections,
            # closes tunnels on any gateway, and dead-letters what a device sent that it refused.
            # It shows the pairing codes a device's channel sends up its tunnel (LIVE), and reads
            # a connection's code back for a client that asks.
            publish=(
                *_reads_events(),
                *_APPENDS,
                *_DEAD_LETTERS,
                "bridge.device.>",
                "live.*.qr.*",
                "$JS.API.DIRECT.GET.LIVE.live.*.qr.*",
                *_SHREDDED,
            ),
            subscribe=(*_own_inbox(GATEWAY), "live.>", "bridge.>", *_SHREDDED),
            allow_responses=True,
        ),
        PROJECTIONS: Permissions(
            # Its durable consumers proj-<name>-v<version> on EVENTS are (re)created at start
            # from the checkpoint; partitioned workers also keep the EVENTS_PARTITIONED feed.
            publish=(
                *_reads_events(),
                *_DEAD_LETTERS,
                "$JS.API.CONSUMER.CREATE.EVENTS.>",
                "$JS.ACK.EVENTS.>",
                "$JS.API.STREAM.INFO.EVENTS_PARTITIONED",
                "$JS.API.STREAM.CREATE.EVENTS_PARTITIONED",
                "$JS.API.DIRECT.GET.EVENTS_PARTITIONED",
                "$JS.API.CONSUMER.*.EVENTS_PARTITIONED.>",  # CREATE, INFO, DELETE
                "$JS.API.CONSUMER.MSG.NEXT.EVENTS_PARTITIONED.*",
                "$JS.ACK.EVENTS_PARTITIONED.>",
            ),
            subscribe=(*_own_inbox(PROJECTIONS), *_SHREDDED),
            # The one stream a non-admin may create: the derived feed, never EVENTS.
            publish_deny=tuple(p for p in _STREAM_ADMIN if p != "$JS.API.STREAM.CREATE.>"),
        ),
        AGENT: Permissions(
            publish=(
                *_reads_events(),
                *_APPENDS,
                *_DEAD_LETTERS,
                *_durable("EVENTS", AGENT),
                "live.>",
                "cmd.*.*.edit_message",  # its reply growing in place (adapters/agent/growing_reply.py)
            ),
            subscribe=(*_own_inbox(AGENT), *_SHREDDED),
        ),
        OUTBOX: Permissions(
            publish=(
                *_reads_events(),
                *_APPENDS,
                *_DEAD_LETTERS,
                *_durable("EVENTS", OUTBOX),
                "cmd.>",
            ),
            subscribe=_own_inbox(OUTBOX),
            publish_deny=(*_STREAM_ADMIN, "cmd.agent.>"),
        ),
        # Reads the log (its durable "notifier") and opens personal fields; appends nothing.
        NOTIFIER: Permissions(
            publish=(*_reads_events(), *_durable("EVENTS", NOTIFIER)),
            subscribe=(*_own_inbox(NOTIFIER), *_SHREDDED),
        ),
    }


def role_permissions(role: str) -> Permissions | None:
    """The permissions of ``role``; ``None`` for the admin, who may do everything."""
    if role == ADMIN:
        return None
    if role.startswith("connector-"):
        return _connector(role.removeprefix("connector-"))
    try:
        return _fixed_roles()[role]
    except KeyError:
        raise LookupError(f"no NATS role {role!r}") from None


def roles(connector_kinds: Iterable[str]) -> list[str]:
    """Every user of a deployment: the admin, the fixed roles and one per connector kind."""
    return [ADMIN, *_fixed_roles(), *(connector_role(kind) for kind in connector_kinds)]


def _list(subjects: Iterable[str]) -> str:
    return "[" + ", ".join(json.dumps(s) for s in subjects) + "]"


def render_user(role: str, password: str) -> str:
    """One entry of ``authorization.users`` (subjects quoted: ``$`` starts a variable in the
    nats-server config language when unquoted)."""
    entry = f"    {{user: {json.dumps(role)}, password: {json.dumps(password)}"
    perms = role_permissions(role)
    if perms is None:
        return entry + "}"
    return (
        entry
        + ", permissions: {\n"
        + f"      publish: {{allow: {_list(perms.publish)}, deny: {_list(perms.publish_deny)}}}\n"
        + f"      subscribe: {{allow: {_list(perms.subscribe)}, deny: {_list(perms.subscribe_deny)}}}\n"
        + ("      allow_responses: true\n" if perms.allow_responses else "")
        + "    }}"
    )


def render_authorization(passwords: Mapping[str, str]) -> str:
    """The nats-server ``authorization`` block for these users (role -> password)."""
    users = "\n".join(render_user(role, password) for role, password in passwords.items())
    return f"authorization {{\n  users = [\n{users}\n  ]\n}}\n"
