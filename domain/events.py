"""The canonical events (DESIGN §5): one envelope, one frozen Struct per event type.

Every event is a msgspec Struct tagged by its ``type`` (``<noun>.<verb>``), so one
decoder reads the whole union in a single pass. The envelope fields are a contract:
``id, type, v, tenant_id, aggregate_id, occurred_at, causation_id, correlation_id,
actor, data``. ``data`` is the typed payload of the event type.

Each event class names the aggregate it belongs to (``AGGREGATE``), which with the
tenant and aggregate id gives its subject (see :mod:`domain.subjects`), and the
current schema version of its payload (``VERSION``); older versions are upcast on
read by :mod:`domain.codec`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal, Union, get_args

import msgspec

from domain.envelope import AGENT as AGENT
from domain.envelope import ASSISTANT as ASSISTANT
from domain.envelope import CONNECTION as CONNECTION
from domain.envelope import CONTACT as CONTACT
from domain.envelope import CONVERSATION as CONVERSATION
from domain.envelope import DEVICE as DEVICE
from domain.envelope import TENANT as TENANT
from domain.envelope import USER as USER
from domain.envelope import AgentMode as AgentMode
from domain.envelope import ConnectionState as ConnectionState
from domain.envelope import ConversationKind as ConversationKind
from domain.envelope import DmPolicy as DmPolicy
from domain.envelope import E as E
from domain.envelope import Event as Event
from domain.envelope import Payload as Payload
from domain.envelope import Plan as Plan
from domain.envelope import Role as Role
from domain.envelope import UsageMetric as UsageMetric
from domain.envelope import new_event as new_event

# --- tenants, users, members ------------------------------------------------------------


class TenantCreatedData(Payload, frozen=True):
    name: str
    plan: Plan = "free"


class TenantCreated(Event, frozen=True, kw_only=True, tag="tenant.created"):
    AGGREGATE = TENANT
    data: TenantCreatedData


class TenantRenamedData(Payload, frozen=True):
    name: str


class TenantRenamed(Event, frozen=True, kw_only=True, tag="tenant.renamed"):
    AGGREGATE = TENANT
    data: TenantRenamedData


class TenantErasedData(Payload, frozen=True):
    reason: Literal["deleted_by_owner", "account_deleted"] = "deleted_by_owner"
    data_keys_shredded: int = 0  # how many data keys of its personal fields were deleted


class TenantErased(Event, frozen=True, kw_only=True, tag="tenant.erased"):
    """An inbox and everything of it are gone: its data keys were deleted before this was
    appended (its personal fields in the log read "[erased]" from then on), and every read
    model, store and index drops its rows (docs/privacy.md)."""

    AGGREGATE = TENANT
    data: TenantErasedData


class RetentionAppliedData(Payload, frozen=True):
    before: date  # what was recorded before this UTC day is gone
    history_days: int  # the plan's window
    data_keys_shredded: int = 0


class RetentionApplied(Event, frozen=True, kw_only=True, tag="retention.applied"):
    """The plan's history window moved on: the data keys of the days before ``before`` were
    deleted (their personal fields read "[erased]"), and the read models drop the messages
    sent before it (docs/privacy.md)."""

    AGGREGATE = TENANT
    data: RetentionAppliedData


class UserRegisteredData(Payload, frozen=True):
    email: str
    display_name: str


class UserRegistered(Event, frozen=True, kw_only=True, tag="user.registered"):
    """A person's account; ``aggregate_id`` is the user id, ``tenant_id`` their home tenant."""

    AGGREGATE = USER
    data: UserRegisteredData


class QuietHours(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Hours of the day (0-23, in the person's time zone) when no push notification reaches
    them: from ``start`` until ``end`` (22 to 7 spans midnight)."""

    start: int
    end: int


class UserPreferencesChangedData(Payload, frozen=True):
    """A person's preferences, whole (the latest replaces them)."""

    time_zone: str = "UTC"  # an IANA name, e.g. "Europe/Berlin"
    quiet_hours: QuietHours | None = None  # None: notifications at any hour
    digest_hour: int | None = None  # the hour (0-23, in time_zone) of the morning digest; None: none
    digest_email: bool = True  # the morning digest by e-mail too (besides push)


class UserPreferencesChanged(Event, frozen=True, kw_only=True, tag="user.preferences_changed"):
    """A person set their time zone and quiet hours; ``aggregate_id`` is the user id,
    ``tenant_id`` the inbox they were in when they did."""

    AGGREGATE = USER
    data: UserPreferencesChangedData


class DigestDueData(Payload, frozen=True):
    date: date  # the day it covers, on the person's clock


class DigestDue(Event, frozen=True, kw_only=True, tag="user.digest_due"):
    """A person's morning came (``digest_hour`` on their clock): their digest of the day goes
    out by push and e-mail. Keyed by the person and the day, so it is due once."""

    AGGREGATE = USER
    data: DigestDueData


class AwaySetData(Payload, frozen=True):
    away_id: str
    until: datetime
    message: str  # the answer people get
    connection_ids: tuple[str, ...] = ()  # where it answers; empty: on every connection
    mode: Literal["answer", "draft"] = "answer"  # sent, or proposed as a draft to approve


class AwaySet(Event, frozen=True, kw_only=True, tag="tenant.away_set"):
    """The inbox is away until ``until``: one answer with ``message`` to each direct
    conversation that writes (on the chosen connections), notifications held until back.
    A newer one replaces it."""

    AGGREGATE = TENANT
    data: AwaySetData


class AwayEndedData(Payload, frozen=True):
    away_id: str
    reason: Literal["returned", "until"] = "returned"  # the owner came back; its time ran out


class AwayEnded(Event, frozen=True, kw_only=True, tag="tenant.away_ended"):
    """The inbox is back: keyed by the away period, so it ends once."""

    AGGREGATE = TENANT
    data: AwayEndedData


class MemberAddedData(Payload, frozen=True):
    user_id: str
    role: Role


class MemberAdded(Event, frozen=True, kw_only=True, tag="member.added"):
    AGGREGATE = TENANT
    data: MemberAddedData


class MemberRoleChangedData(Payload, frozen=True):
    user_id: str
    role: Role


class MemberRoleChanged(Event, frozen=True, kw_only=True, tag="member.role_changed"):
    AGGREGATE = TENANT
    data: MemberRoleChangedData


class MemberRemovedData(Payload, frozen=True):
    user_id: str


class MemberRemoved(Event, frozen=True, kw_only=True, tag="member.removed"):
    AGGREGATE = TENANT
    data: MemberRemovedData


class PlanChangedData(Payload, frozen=True):
    plan: Plan
    previous_plan: Plan


class PlanChanged(Event, frozen=True, kw_only=True, tag="plan.changed"):
    AGGREGATE = TENANT
    data: PlanChangedData


class UsageRecordedData(Payload, frozen=True):
    metric: UsageMetric
    quantity: int
    source_id: str | None = None  # what was metered: a message id, an agent run id


class UsageRecorded(Event, frozen=True, kw_only=True, tag="usage.recorded"):
    AGGREGATE = TENANT
    data: UsageRecordedData


class SubscriptionChangedData(Payload, frozen=True):
    customer_id: str  # Stripe's ids
    subscription_id: str
    status: str  # Stripe's: active, trialing, past_due, canceled, unpaid, incomplete, …
    plan: Plan  # the inbox's plan after this change
    price_id: str | None = None
    cancel_at_period_end: bool = False  # paid until current_period_end, then Stripe ends it
    current_period_end: datetime | None = None
    grace_until: datetime | None = None  # past due: the plan is kept while Stripe retries, until then
    stripe_event_id: str | None = None  # the Stripe event that made the product read it again


class SubscriptionChanged(Event, frozen=True, kw_only=True, tag="billing.subscription_changed"):
    """The inbox's Stripe subscription as Stripe has it now (read back from Stripe on each of
    its events, whatever their order): recorded when its status, price, period, cancellation
    or grace changes. A change of plan it causes is its own ``plan.changed``."""

    AGGREGATE = TENANT
    data: SubscriptionChangedData


# --- connections (a tenant's account on one channel) ---------------------------------


class ConnectionCreatedData(Payload, frozen=True):
    channel: str
    display_name: str
    # "bridge": the channel runs on a device the user owns (the Personal Bridge), named here
    mode: Literal["cloud", "bridge"] = "cloud"
    device_id: str | None = None


class ConnectionCreated(Event, frozen=True, kw_only=True, tag="connection.created"):
    AGGREGATE = CONNECTION
    data: ConnectionCreatedData


class ConnectionStateChangedData(Payload, frozen=True):
    state: ConnectionState
    code: str  # machine code, e.g. "token_revoked"
    message: str  # what a person reads, e.g. "Telegram no longer accepts this bot token"
    action: str | None = None  # suggested action: "reconnect", "log_in_again", "open_app"


class ConnectionStateChanged(Event, frozen=True, kw_only=True, tag="connection.state_changed"):
    AGGREGATE = CONNECTION
    data: ConnectionStateChangedData


class ConnectionCredentialsRotatedData(Payload, frozen=True):
    key_id: str  # the vault key now encrypting the credentials, never the credentials


class ConnectionCredentialsRotated(Event, frozen=True, kw_only=True, tag="connection.credentials_rotated"):
    AGGREGATE = CONNECTION
    data: ConnectionCredentialsRotatedData


class ConnectionBackfilledData(Payload, frozen=True):
    since: datetime  # the oldest time the history reached back to
    conversations: int  # with at least one message in that window
    messages: int  # stored as backfill (a message already in the log is stored once)


class ConnectionBackfilled(Event, frozen=True, kw_only=True, tag="connection.backfilled"):
    """A cloud connection's recent history was brought in, once, when it was first connected
    (``backfill`` on each message: shown, never answered or counted as unread). Recorded
    after the history, so a session stopped half-way brings it in again on its next start."""

    AGGREGATE = CONNECTION
    data: ConnectionBackfilledData


class ConnectionAgentSettingsChangedData(Payload, frozen=True):
    """Only the fields that are set change."""

    agent_mode: AgentMode | None = None  # its conversations' mode unless one has its own
    takeover_minutes: int | None = None  # how long the agent steps back after a person answers
    dm_policy: DmPolicy | None = None  # who the agent answers in direct messages


class ConnectionAgentSettingsChanged(
    Event, frozen=True, kw_only=True, tag="connection.agent_settings_changed"
):
    """How the agent behaves in the connection's conversations: answer (``auto``), propose
    drafts for a person to send (``draft``) or stay out (``off``), and how long it steps back
    when a person answers, and who it answers in direct messages (``dm_policy``: ``open``,
    ``pairing`` or ``allowlist``). Until set, the website chat is ``auto``, every other channel
    ``draft``; the takeover lasts 30 minutes; the DM policy is ``open``."""

    AGGREGATE = CONNECTION
    data: ConnectionAgentSettingsChangedData


class ConnectionSenderRequestedData(Payload, frozen=True):
    sender_id: str  # the channel's id of the person (as on message.received's sender)
    sender_name: str
    conversation_id: str  # the direct conversation they wrote in
    message_id: str  # their first message
    code: str | None = None  # ``pairing``: the one-time code they were sent; None under ``allowlist``


class ConnectionSenderRequested(Event, frozen=True, kw_only=True, tag="connection.sender_requested"):
    """Someone the owner has not approved wrote a direct message on a connection whose DM
    policy is ``pairing`` or ``allowlist``: they "want to talk". Their messages are stored
    as usual; the agent does not answer them until the owner approves them. Under
    ``pairing`` they were sent a one-time ``code`` the owner may approve them by."""

    AGGREGATE = CONNECTION
    data: ConnectionSenderRequestedData


class ConnectionSenderDecidedData(Payload, frozen=True):
    sender_id: str
    via: Literal["inbox", "code"] = "inbox"  # approved from the inbox, or by the code they were sent


class ConnectionSenderApproved(Event, frozen=True, kw_only=True, tag="connection.sender_approved"):
    """The owner lets the agent answer this sender's direct messages on the connection."""

    AGGREGATE = CONNECTION
    data: ConnectionSenderDecidedData


class ConnectionSenderBlocked(Event, frozen=True, kw_only=True, tag="connection.sender_blocked"):
    """The agent never answers this sender on the connection (their messages are still stored)."""

    AGGREGATE = CONNECTION
    data: ConnectionSenderDecidedData


class ConnectionDeletedData(Payload, frozen=True):
    reason: str | None = None


class ConnectionDeleted(Event, frozen=True, kw_only=True, tag="connection.deleted"):
    AGGREGATE = CONNECTION
    data: ConnectionDeletedData


# --- conversations and messages --------------------------------------------------------


class ConversationCreatedData(Payload, frozen=True):
    channel: str
    connection_id: str
    kind: ConversationKind
    title: str
    external_id: str  # the provider's chat / channel / thread id
    agent_enabled: bool = True
    preview: bool = False  # the owner's own "Try it" chat (the website chat, as a visitor)


class ConversationCreated(Event, frozen=True, kw_only=True, tag="conversation.created"):
    AGGREGATE = CONVERSATION
    data: ConversationCreatedData


class ConversationUpdatedData(Payload, frozen=True):
    """Only the fields that are set change; ``marked_read`` clears the unread count,
    ``marked_unread`` makes it at least one."""

    title: str | None = None
    agent_enabled: bool | None = None  # older events: False is agent_mode "off", True "auto"
    pinned: bool | None = None
    marked_read: bool = False
    agent_mode: AgentMode | None = None  # this conversation's own mode (over its connection's)
    marked_unread: bool = False


class ConversationUpdated(Event, frozen=True, kw_only=True, tag="conversation.updated"):
    """Title, agent on/off, pin or mark-as-read changed; unset fields stay as they were."""

    AGGREGATE = CONVERSATION
    data: ConversationUpdatedData


class ConversationAgentPausedData(Payload, frozen=True):
    reason: Literal["human_replied", "owner_command"]
    until: datetime
    message_id: str | None = None  # the person's message that made it step back


class ConversationAgentPaused(Event, frozen=True, kw_only=True, tag="conversation.agent_paused"):
    """The agent steps back in this conversation until ``until``: a person answered (human
    takeover) or the owner said so. A later pause replaces it; ``agent_resumed`` ends it."""

    AGGREGATE = CONVERSATION
    data: ConversationAgentPausedData


class ConversationAgentResumedData(Payload, frozen=True):
    reason: Literal["owner", "owner_command"] = "owner"


class ConversationAgentResumed(Event, frozen=True, kw_only=True, tag="conversation.agent_resumed"):
    """The agent answers again in this conversation before its pause ran out."""

    AGGREGATE = CONVERSATION
    data: ConversationAgentResumedData


class ConversationSnoozedData(Payload, frozen=True):
    until: datetime | None  # None: back now (the snooze is lifted)


class ConversationSnoozed(Event, frozen=True, kw_only=True, tag="conversation.snoozed"):
    """A person put a conversation that waits for a reply out of sight until ``until``: it
    leaves "Needs reply" until then, or until the contact writes again."""

    AGGREGATE = CONVERSATION
    data: ConversationSnoozedData


class FollowUpScheduledData(Payload, frozen=True):
    follow_up_id: str
    due_at: datetime
    only_if_no_reply: bool = True  # called off by itself when the contact writes before then
    note: str | None = None  # what to follow up on, for the person reminded


class FollowUpScheduled(Event, frozen=True, kw_only=True, tag="reminder.scheduled"):
    """ "Nudge me if they have not answered by then": at ``due_at`` a ``reminder.due``, unless
    (``only_if_no_reply``) the contact wrote in the conversation since."""

    AGGREGATE = CONVERSATION
    data: FollowUpScheduledData


class FollowUpProposedData(Payload, frozen=True):
    follow_up_id: str
    due_at: datetime
    note: str  # why, in the contact's words ("I'll get back to you Friday")
    message_id: str  # the message that promised it


class FollowUpProposed(Event, frozen=True, kw_only=True, tag="reminder.proposed"):
    """The agent read a promise ("I'll get back to you Friday") and proposes a follow-up if
    they have not written by then; nothing is reminded until a person approves it
    (``reminder.scheduled`` with the same id) — or called off (``reminder.cancelled``)."""

    AGGREGATE = CONVERSATION
    data: FollowUpProposedData


class FollowUpCancelledData(Payload, frozen=True):
    follow_up_id: str


class FollowUpCancelled(Event, frozen=True, kw_only=True, tag="reminder.cancelled"):
    """A person called a follow-up off (or dismissed its reminder)."""

    AGGREGATE = CONVERSATION
    data: FollowUpCancelledData


class ReminderDueData(Payload, frozen=True):
    follow_up_id: str
    note: str | None = None


class ReminderDue(Event, frozen=True, kw_only=True, tag="reminder.due"):
    """A follow-up's time came and its condition held: someone should follow up now (pushed,
    and counted on ``/v1/me``)."""

    AGGREGATE = CONVERSATION
    data: ReminderDueData


class ConversationSummarizedData(Payload, frozen=True):
    summary: str
    through_message_id: str  # the newest message the summary covers
    through_sent_at: datetime
    messages: int  # how many messages it covers in all
    model: str | None = None  # the model that wrote it; None: extractive (first sentences, no model)


class ConversationSummarized(Event, frozen=True, kw_only=True, tag="conversation.summarized"):
    """The agent's rolling summary of a conversation's older messages, kept when the history
    outgrows what it sends to the model; the latest one replaces the ones before. With a
    model configured the model writes it (``model``); the offline model keeps an extractive
    one (each older message's first sentence)."""

    AGGREGATE = CONVERSATION
    data: ConversationSummarizedData


class Sender(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: str
    name: str
    is_bot: bool = False
    email: str | None = None  # where the channel tells it (a Slack or Teams profile), lower case


class Attachment(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: Literal["image", "video", "audio", "document", "sticker", "other"]
    provider_file_id: str
    mime: str | None = None
    size: int | None = None
    name: str | None = None


class MessageReceivedData(Payload, frozen=True):
    message_id: str
    connection_id: str
    channel: str
    provider_message_id: str
    sender: Sender
    text: str
    sent_at: datetime
    attachments: tuple[Attachment, ...] = ()
    reply_to_message_id: str | None = None
    mentions_agent: bool = False
    # history brought in when a channel is first connected (the bridge's backfill): shown in
    # the inbox, but it neither wakes the agent nor counts as unread
    backfill: bool = False


class MessageReceived(Event, frozen=True, kw_only=True, tag="message.received"):
    """A message from a person on a channel, normalized by its connector. Connectors derive
    ``message_id`` from the provider's id (``domain.ids.stable_id("m", dedupe key)``), so a
    repeat delivery always names the same message."""

    AGGREGATE = CONVERSATION
    data: MessageReceivedData


class MessageSendRequestedData(Payload, frozen=True):
    """What to send, complete enough for the outbox to build the channel command alone."""

    message_id: str  # the message's id from now on: message.sent / send_failed name it
    connection_id: str
    channel: str
    to: str  # the conversation's provider id (external_id): where the connector sends
    text: str
    sender: Sender
    reply_to_message_id: str | None = None
    agent_run_id: str | None = None
    draft_id: str | None = None  # a person sent the agent's draft (maybe edited)
    send_at: datetime | None = None  # scheduled: released (message.send_released) at this time


class MessageDraftProposedData(Payload, frozen=True):
    draft_id: str
    run_id: str
    connection_id: str
    channel: str
    to: str  # where it would go: the conversation's provider id
    text: str
    reply_to_message_id: str | None = None  # the message it answers
    reason: Literal["draft_mode", "offline_model", "injection_suspected"] = "draft_mode"
    flag: str | None = None  # injection_suspected: what looked like an attack, for the person deciding


class MessageDraftProposed(Event, frozen=True, kw_only=True, tag="message.draft_proposed"):
    """The agent's reply, kept for a person to send, edit or discard instead of sent: the
    conversation is in ``draft`` mode, the offline model wrote it (it never writes to a third
    party by itself), or the message it answers looked like a prompt injection (``flag``
    says why). Sending it is a ``message.send_requested`` naming the draft."""

    AGGREGATE = CONVERSATION
    data: MessageDraftProposedData


class MessageDraftDiscardedData(Payload, frozen=True):
    draft_id: str


class MessageDraftDiscarded(Event, frozen=True, kw_only=True, tag="message.draft_discarded"):
    AGGREGATE = CONVERSATION
    data: MessageDraftDiscardedData


class MessageSendRequested(Event, frozen=True, kw_only=True, tag="message.send_requested"):
    """Someone (a person in the inbox, the agent) asked to send a message. The outbox turns
    it into a ``cmd.<channel>.<connection>.send_message`` command; the connector answers
    with ``message.sent`` or ``message.send_failed`` for the same ``message_id``."""

    AGGREGATE = CONVERSATION
    data: MessageSendRequestedData


class MessageSendReleased(Event, frozen=True, kw_only=True, tag="message.send_released"):
    """A scheduled message's time came (its request had ``send_at``): the outbox sends it now,
    as it sends a request without one. It carries the request's data, so the outbox needs
    nothing else; released once (keyed by the message), never after its cancellation."""

    AGGREGATE = CONVERSATION
    data: MessageSendRequestedData


class MessageSendCancelledData(Payload, frozen=True):
    message_id: str


class MessageSendCancelled(Event, frozen=True, kw_only=True, tag="message.send_cancelled"):
    """A person called off a scheduled message before its time: it is never sent."""

    AGGREGATE = CONVERSATION
    data: MessageSendCancelledData


class MessageSentData(Payload, frozen=True):
    message_id: str
    connection_id: str
    channel: str
    provider_message_id: str
    text: str
    sent_at: datetime
    sender: Sender
    agent_run_id: str | None = None
    model: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    # None: sent by us (the outbox); "device": the owner wrote it themselves, in the channel's
    # own app (on their phone or Mac: the bridge saw it; in Discord or Slack: the connector did)
    origin: Literal["device"] | None = None
    backfill: bool = False  # as on message.received


class MessageSent(Event, frozen=True, kw_only=True, tag="message.sent"):
    """A message the provider confirmed sending (a person's reply or the agent's)."""

    AGGREGATE = CONVERSATION
    data: MessageSentData


class MessageSendFailedData(Payload, frozen=True):
    message_id: str
    connection_id: str
    code: str
    reason: str


class MessageSendFailed(Event, frozen=True, kw_only=True, tag="message.send_failed"):
    AGGREGATE = CONVERSATION
    data: MessageSendFailedData


class MessageEditedData(Payload, frozen=True):
    message_id: str
    text: str
    edited_at: datetime


class MessageEdited(Event, frozen=True, kw_only=True, tag="message.edited"):
    AGGREGATE = CONVERSATION
    data: MessageEditedData


class MessageDeletedData(Payload, frozen=True):
    message_id: str
    deleted_at: datetime


class MessageDeleted(Event, frozen=True, kw_only=True, tag="message.deleted"):
    AGGREGATE = CONVERSATION
    data: MessageDeletedData


class MessageStatusChangedData(Payload, frozen=True):
    """The provider's receipt for a message we sent: it reached the person, or they read it.
    Named by the provider's id (``message.sent``'s ``provider_message_id``)."""

    connection_id: str
    provider_message_id: str
    status: Literal["delivered", "read"]
    at: datetime


class MessageStatusChanged(Event, frozen=True, kw_only=True, tag="message.status_changed"):
    AGGREGATE = CONVERSATION
    data: MessageStatusChangedData


class ReactionData(Payload, frozen=True):
    message_id: str
    emoji: str
    sender_id: str


class ReactionAdded(Event, frozen=True, kw_only=True, tag="reaction.added"):
    AGGREGATE = CONVERSATION
    data: ReactionData


class ReactionRemoved(Event, frozen=True, kw_only=True, tag="reaction.removed"):
    AGGREGATE = CONVERSATION
    data: ReactionData


class MediaAvailableData(Payload, frozen=True):
    message_id: str
    media_id: str
    sha256: str
    mime: str
    size: int
    storage_key: str


class MediaAvailable(Event, frozen=True, kw_only=True, tag="media.available"):
    AGGREGATE = CONVERSATION
    data: MediaAvailableData


# --- agent runs (serialized per conversation) -----------------------------------------


class AgentRoutingRules(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the agent may answer. Empty lists mean "no restriction"."""

    channels: tuple[str, ...] = ()  # only these channels ("webchat", "telegram", ...)
    groups_require_mention: bool = True  # in groups, answer only when mentioned
    allowed_senders: tuple[str, ...] = ()  # sender ids it answers; empty = everyone
    quiet_hours: tuple[int, int] | None = None  # (from, to) hours on the owner's clock: it stays quiet
    auto_reply_outside_quiet: bool = True  # answer outside quiet hours
    # Sender ids whose questions may use tools that read beyond their own conversation
    # (search_history over the whole inbox), in direct conversations; empty = nobody.
    inbox_search_senders: tuple[str, ...] = ()
    # Tell the agent what the same person said lately on other channels (their contact's
    # other conversations); the owner's notes on the person reach it either way.
    cross_channel_memory: bool = False


class AgentConfiguredData(Payload, frozen=True):
    """The whole configuration of an agent (the latest event wins)."""

    name: str
    model: str  # e.g. "claude-sonnet-4-6"; the offline model answers when no key is set
    system_prompt: str
    tools: tuple[str, ...] = ("search_history", "current_time")
    rules: AgentRoutingRules = AgentRoutingRules()
    enabled: bool = True
    template: str | None = None  # the template it started from, e.g. "personal_assistant"


class AgentConfigured(Event, frozen=True, kw_only=True, tag="agent.configured"):
    """An agent was created or its configuration changed."""

    AGGREGATE = AGENT
    data: AgentConfiguredData


class ContactMergedData(Payload, frozen=True):
    merged_contact_id: str  # its identities join the contact this event is on; it is gone


class ContactMerged(Event, frozen=True, kw_only=True, tag="contact.merged"):
    """The owner said two contacts are one person: every identity of ``merged_contact_id``
    (a handle on some channel) now belongs to this contact, and its notes join these."""

    AGGREGATE = CONTACT
    data: ContactMergedData


class ContactSplitData(Payload, frozen=True):
    identity_id: str
    new_contact_id: str


class ContactSplit(Event, frozen=True, kw_only=True, tag="contact.split"):
    """The owner said one identity of this contact is someone else: it leaves, alone, as
    ``new_contact_id``."""

    AGGREGATE = CONTACT
    data: ContactSplitData


class ContactNotesSetData(Payload, frozen=True):
    notes: str


class ContactNotesSet(Event, frozen=True, kw_only=True, tag="contact.notes_set"):
    """What the owner keeps about a person (replacing what was there)."""

    AGGREGATE = CONTACT
    data: ContactNotesSetData


class MemoryFactProposedData(Payload, frozen=True):
    fact_id: str
    text: str  # e.g. "Ada prefers appointments after 4 pm"
    conversation_id: str | None = None  # where it came up (None: about the inbox as a whole)
    run_id: str | None = None  # the run that proposed it


class MemoryFactProposed(Event, frozen=True, kw_only=True, tag="memory.fact_proposed"):
    """The agent asks to remember something (its ``remember`` tool). It waits for the owner:
    only an approved fact reaches the agent's context."""

    AGGREGATE = TENANT
    data: MemoryFactProposedData


class MemoryFactApprovedData(Payload, frozen=True):
    fact_id: str
    text: str  # as approved: the owner may have reworded it
    conversation_id: str | None = None  # the conversation it is about (None: every conversation)


class MemoryFactApproved(Event, frozen=True, kw_only=True, tag="memory.fact_approved"):
    """A fact the agent may use: a proposal the owner approved, or one the owner wrote."""

    AGGREGATE = TENANT
    data: MemoryFactApprovedData


class MemoryFactForgottenData(Payload, frozen=True):
    fact_id: str


class MemoryFactForgotten(Event, frozen=True, kw_only=True, tag="memory.fact_forgotten"):
    """A proposal the owner turned down, or a fact the agent must no longer use."""

    AGGREGATE = TENANT
    data: MemoryFactForgottenData


class RoutingRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which agent answers a message: every condition set must hold (none set: any message)."""

    agent_id: str
    name: str | None = None  # for people, e.g. "Support on Slack"
    connection_id: str | None = None
    channel: str | None = None  # a channel kind: "slack", "webchat", ...
    conversation_kind: ConversationKind | None = None  # direct, group, thread
    sender_id: str | None = None  # as messages show it in sender_id
    keyword: str | None = None  # a word or phrase the message contains (any case)


class AgentRoutingSetData(Payload, frozen=True):
    rules: tuple[RoutingRule, ...] = ()


class AgentRoutingSet(Event, frozen=True, kw_only=True, tag="agent.routing_set"):
    """The tenant's routing table, whole (the latest replaces it): the first rule a message
    matches picks the agent that answers it; no rule matching, the default agent (the first)."""

    AGGREGATE = TENANT
    data: AgentRoutingSetData


class AgentRunRequestedData(Payload, frozen=True):
    run_id: str
    agent_id: str
    trigger_message_id: str
    routed_by: int | None = None  # the routing rule (its place, from 0) that chose the agent; None: default


class AgentRunRequested(Event, frozen=True, kw_only=True, tag="agent.run_requested"):
    AGGREGATE = ASSISTANT
    data: AgentRunRequestedData


class AgentRunStartedData(Payload, frozen=True):
    run_id: str
    model: str


class AgentRunStarted(Event, frozen=True, kw_only=True, tag="agent.run_started"):
    AGGREGATE = ASSISTANT
    data: AgentRunStartedData


class AgentToolUse(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    input: dict[str, Any]
    is_error: bool = False


class AgentRunCompletedData(Payload, frozen=True):
    run_id: str
    model: str
    tokens_in: int
    tokens_out: int
    cost_micros: int
    reply_message_id: str | None = None
    tool_calls: tuple[AgentToolUse, ...] = ()
    offline: bool = False  # answered by the built-in offline model


class AgentRunCompleted(Event, frozen=True, kw_only=True, tag="agent.run_completed"):
    AGGREGATE = ASSISTANT
    data: AgentRunCompletedData


class AgentRunFailedData(Payload, frozen=True):
    run_id: str
    code: str
    reason: str


class AgentRunFailed(Event, frozen=True, kw_only=True, tag="agent.run_failed"):
    AGGREGATE = ASSISTANT
    data: AgentRunFailedData


# --- devices ----------------------------------------------------------------------------


class DevicePairedData(Payload, frozen=True):
    """A Personal Bridge paired with a one-time code. ``public_key`` is the device's Ed25519
    public key (raw, base64url): the tunnel checks the device's signatures with it. The
    private key never leaves the device."""

    name: str
    platform: str
    user_id: str  # who created the pairing code
    public_key: str
    fingerprint: str  # "SHA256:" + base64 of the key's SHA-256, as people compare keys


class DevicePaired(Event, frozen=True, kw_only=True, tag="device.paired"):
    AGGREGATE = DEVICE
    data: DevicePairedData


class DeviceStateChangedData(Payload, frozen=True):
    state: Literal["online", "offline"]
    reason: str  # "connected", "closed", "heartbeat_missed", "replaced", "revoked", ...
    version: str | None = None  # the bridge's version, when it says hello
    capabilities: tuple[str, ...] = ()  # what it offers: "imessage.read", "imessage.send", ...


class DeviceStateChanged(Event, frozen=True, kw_only=True, tag="device.state_changed"):
    """The device's tunnel opened (online, with what it offers) or closed (offline, why)."""

    AGGREGATE = DEVICE
    data: DeviceStateChangedData


class DeviceRevokedData(Payload, frozen=True):
    reason: str | None = None


class DeviceRevoked(Event, frozen=True, kw_only=True, tag="device.revoked"):
    AGGREGATE = DEVICE
    data: DeviceRevokedData


AnyEvent = Union[  # noqa: UP007 - a runtime union object for msgspec's decoder
    TenantCreated,
    TenantRenamed,
    TenantErased,
    RetentionApplied,
    UserRegistered,
    UserPreferencesChanged,
    DigestDue,
    AwaySet,
    AwayEnded,
    MemberAdded,
    MemberRoleChanged,
    MemberRemoved,
    PlanChanged,
    UsageRecorded,
    SubscriptionChanged,
    ConnectionCreated,
    ConnectionStateChanged,
    ConnectionCredentialsRotated,
    ConnectionBackfilled,
    ConnectionDeleted,
    ConnectionAgentSettingsChanged,
    ConnectionSenderRequested,
    ConnectionSenderApproved,
    ConnectionSenderBlocked,
    ConversationCreated,
    ConversationUpdated,
    ConversationSummarized,
    ConversationSnoozed,
    FollowUpScheduled,
    FollowUpProposed,
    FollowUpCancelled,
    ReminderDue,
    ConversationAgentPaused,
    ConversationAgentResumed,
    MessageReceived,
    MessageSendRequested,
    MessageSendReleased,
    MessageSendCancelled,
    MessageDraftProposed,
    MessageDraftDiscarded,
    MessageSent,
    MessageSendFailed,
    MessageEdited,
    MessageDeleted,
    MessageStatusChanged,
    ReactionAdded,
    ReactionRemoved,
    MediaAvailable,
    AgentConfigured,
    AgentRoutingSet,
    ContactMerged,
    ContactSplit,
    ContactNotesSet,
    MemoryFactProposed,
    MemoryFactApproved,
    MemoryFactForgotten,
    AgentRunRequested,
    AgentRunStarted,
    AgentRunCompleted,
    AgentRunFailed,
    DevicePaired,
    DeviceRevoked,
    DeviceStateChanged,
]

EVENT_TYPES: tuple[type[Event], ...] = get_args(AnyEvent)


def type_name(event_cls: type[Event]) -> str:
    tag = event_cls.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


BY_TYPE: dict[str, type[Event]] = {type_name(cls): cls for cls in EVENT_TYPES}
for _name, _cls in BY_TYPE.items():
    _cls.TYPE = _name
