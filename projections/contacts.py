"""Read model: people across channels. Every sender of a message is an identity (a channel's
id of a person on one connection), each in one contact; merges and splits move identities
between contacts (``domain/contacts.py``). The queries are ``contacts_queries.py``."""

from __future__ import annotations

from domain import contacts
from domain import events as ev
from projections.statements import Handler, Statement, StatementProjection, event_fields, statement

SCHEMA = """
CREATE TABLE contacts (
    contact_id   text PRIMARY KEY,
    tenant_id    text NOT NULL,
    display_name text NOT NULL,
    notes        text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    merged_into  text          -- gone: its identities are that contact's now
);
CREATE TABLE identities (
    identity_id   text PRIMARY KEY,
    tenant_id     text NOT NULL,
    contact_id    text NOT NULL,
    channel       text NOT NULL,
    connection_id text NOT NULL,
    sender_id     text NOT NULL,  -- as messages show it
    display_name  text NOT NULL,
    phone         text,           -- +<digits>, where the channel's id carries one
    email         text,
    first_seen    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL
);
CREATE TABLE identity_conversations (
    identity_id     text NOT NULL,
    conversation_id text NOT NULL,
    tenant_id       text NOT NULL,
    PRIMARY KEY (identity_id, conversation_id)
);
"""

INDEXES = """
CREATE INDEX contacts_tenant ON contacts (tenant_id) WHERE merged_into IS NULL;
CREATE INDEX identities_contact ON identities (contact_id);
CREATE INDEX identities_phone ON identities (tenant_id, phone) WHERE phone IS NOT NULL;
CREATE INDEX identities_email ON identities (tenant_id, email) WHERE email IS NOT NULL;
CREATE INDEX identity_conversations_conversation ON identity_conversations (conversation_id);
"""


def _received(seq: int, event: ev.MessageReceived) -> list[Statement]:
    """A sender seen: their identity (and its first contact) exists, named as now."""
    sender = event.data.sender
    if sender.is_bot:
        return []  # not a person
    identity = contacts.identity_id(event.data.connection_id, sender.id)
    values = {
        "identity": identity, "contact": contacts.first_contact_id(identity), "tenant": event.tenant_id,
        "channel": event.data.channel, "connection": event.data.connection_id, "sender": sender.id,
        "name": sender.name or sender.id, "phone": contacts.phone_of(sender.id),
        "email": sender.email or contacts.email_of(sender.id), "at": event.data.sent_at,
        "conversation": event.aggregate_id,
    }  # fmt: skip
    return [
        (
            "INSERT INTO contacts (contact_id, tenant_id, display_name, created_at)"
            " VALUES (%(contact)s, %(tenant)s, %(name)s, %(at)s) ON CONFLICT (contact_id) DO NOTHING",
            values,
        ),
        (
            "INSERT INTO identities VALUES (%(identity)s, %(tenant)s, %(contact)s, %(channel)s,"
            " %(connection)s, %(sender)s, %(name)s, %(phone)s, %(email)s, %(at)s, %(at)s)"
            " ON CONFLICT (identity_id) DO UPDATE SET display_name = EXCLUDED.display_name,"
            " last_seen = GREATEST(identities.last_seen, EXCLUDED.last_seen)",
            values,
        ),
        (
            "INSERT INTO identity_conversations VALUES (%(identity)s, %(conversation)s, %(tenant)s)"
            " ON CONFLICT DO NOTHING",
            values,
        ),
    ]


def _merged(seq: int, event: ev.ContactMerged) -> list[Statement]:
    values = {"into": event.aggregate_id, "merged": event.data.merged_contact_id, "tenant": event.tenant_id}
    return [
        (
            "UPDATE contacts SET notes = trim(both E'\\n' FROM contacts.notes || E'\\n' || m.notes)"
            " FROM contacts m WHERE contacts.contact_id = %(into)s AND m.contact_id = %(merged)s"
            " AND m.tenant_id = %(tenant)s AND m.notes <> ''",
            values,
        ),
        (
            "UPDATE identities SET contact_id = %(into)s"
            " WHERE contact_id = %(merged)s AND tenant_id = %(tenant)s",
            values,
        ),
        (
            "UPDATE contacts SET merged_into = %(into)s"
            " WHERE contact_id = %(merged)s AND tenant_id = %(tenant)s",
            values,
        ),
    ]


def _split(seq: int, event: ev.ContactSplit) -> list[Statement]:
    fields = event_fields(event)
    return [
        (
            "INSERT INTO contacts (contact_id, tenant_id, display_name, created_at)"
            " SELECT %(new_contact_id)s, tenant_id, display_name, %(occurred_at)s FROM identities"
            " WHERE identity_id = %(identity_id)s AND tenant_id = %(tenant_id)s ON CONFLICT DO NOTHING",
            fields,
        ),
        (
            "UPDATE identities SET contact_id = %(new_contact_id)s"
            " WHERE identity_id = %(identity_id)s AND tenant_id = %(tenant_id)s",
            fields,
        ),
    ]


HANDLERS: dict[str, Handler] = {
    "message.received": _received,
    "contact.merged": _merged,
    "contact.split": _split,
    "contact.notes_set": statement(
        "UPDATE contacts SET notes = %(notes)s"
        " WHERE contact_id = %(aggregate_id)s AND tenant_id = %(tenant_id)s"
    ),
}


class ContactsProjection(StatementProjection):
    name = "contacts"
    version = 1
    tables: tuple[str, ...] = ("contacts", "identities", "identity_conversations")
    schema = SCHEMA
    indexes = INDEXES
    handlers = HANDLERS
