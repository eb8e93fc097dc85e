"""One example of every event type: the documented contract (docs/events.md is generated
from these) and a fixture for round-trip tests. Ids and times are fixed so the examples
are stable."""

from __future__ import annotations

from datetime import UTC, date, datetime

from domain import events as ev

TENANT_ID = "t_01JD3V5W3Q8Z6Y1T0N4X2M7K9B"
USER_ID = "u_01JD3V5W3R2C8D5E6F7G8H9J0K"
CONNECTION_ID = "cn_01JD3V5W3S4N5P6Q7R8S9T0V1W"
CONVERSATION_ID = "c_01JD3V5W3T6X7Y8Z9A0B1C2D3E"
MESSAGE_ID = "m_3V5W3T6X7Y8Z9A0B1C2D3E4F5G"
REPLY_ID = "m_01JD3V5W4A1B2C3D4E5F6G7H8J"
RUN_ID = "r_01JD3V5W4B9K8M7N6P5Q4R3S2T"
DEVICE_ID = "d_01JD3V5W4C2V3W4X5Y6Z7A8B9C"
AGENT_ID = "ag_01JD3V5W4D3X4Y5Z6A7B8C9D0E"
DRAFT_ID = "dr_01JD3V5W4E4Y5Z6A7B8C9D0E1F"
FACT_ID = "fa_01JD3V5W4F5Z6A7B8C9D0E1F2G"
SCHEDULED_ID = "m_01JD3V5W4G6A7B8C9D0E1F2G3H"
FOLLOW_UP_ID = "fu_01JD3V5W4H7B8C9D0E1F2G3H4J"
CONTACT_ID = "ct_01JD3V5W4J8C9D0E1F2G3H4J5K"
OTHER_CONTACT_ID = "ct_01JD3V5W4K9D0E1F2G3H4J5K6M"
IDENTITY_ID = "id_01JD3V5W4M0E1F2G3H4J5K6M7N"
AWAY_ID = "aw_01JD3V5W4N1F2G3H4J5K6M7N8P"
PROPOSED_FOLLOW_UP_ID = "fu_01JD3V5W4P2G3H4J5K6M7N8P9Q"
AT = datetime(2026, 11, 24, 9, 30, 0, tzinfo=UTC)

_TELEGRAM_SENDER = ev.Sender(id="tg:5551234", name="Ada Lovelace")
_AGENT = ev.Sender(id="agent:default", name="Moltbot", is_bot=True)


def _make(cls: type[ev.E], aggregate_id: str, actor: str, data: ev.Payload, n: int) -> ev.E:
    return ev.new_event(
        cls,
        tenant_id=TENANT_ID,
        aggregate_id=aggregate_id,
        actor=actor,
        data=data,
        occurred_at=AT,
        event_id=f"01JD3V5W5{n:017d}",
        correlation_id="01JD3V5W500000000000000000" if n else None,
    )


def examples() -> list[ev.Event]:
    """Every event type once, in an order that makes a plausible history."""
    user = f"user:{USER_ID}"
    connector = f"connector:telegram:{CONNECTION_ID}"
    agent = "agent:default"
    specs: list[tuple[type[ev.Event], str, str, ev.Payload]] = [
        (ev.TenantCreated, TENANT_ID, user, ev.TenantCreatedData(name="Personal")),
        (
            ev.UserRegistered,
            USER_ID,
            user,
            ev.UserRegisteredData(email="ada@example.com", display_name="Ada"),
        ),
        (ev.MemberAdded, TENANT_ID, user, ev.MemberAddedData(user_id=USER_ID, role="owner")),
        (ev.TenantRenamed, TENANT_ID, user, ev.TenantRenamedData(name="Ada's inbox")),
        (ev.MemberRoleChanged, TENANT_ID, user, ev.MemberRoleChangedData(user_id=USER_ID, role="admin")),
        (ev.PlanChanged, TENANT_ID, "billing:stripe", ev.PlanChangedData(plan="pro", previous_plan="free")),
        (
            ev.ConnectionCreated,
            CONNECTION_ID,
            user,
            ev.ConnectionCreatedData(channel="telegram", display_name="@ada_bot"),
        ),
        (
            ev.ConnectionStateChanged,
            CONNECTION_ID,
            connector,
            ev.ConnectionStateChangedData(
                state="connected", code="ok", message="Connected to Telegram as @ada_bot"
            ),
        ),
        (
            ev.ConnectionCredentialsRotated,
            CONNECTION_ID,
            "operator:vault",
            ev.ConnectionCredentialsRotatedData(key_id="k2026-11"),
        ),
        (
            ev.ConnectionBackfilled,
            CONNECTION_ID,
            connector,
            ev.ConnectionBackfilledData(
                since=datetime(2026, 3, 1, 9, 30, tzinfo=UTC), conversations=4, messages=87
            ),
        ),
        (
            ev.ConversationCreated,
            CONVERSATION_ID,
            connector,
            ev.ConversationCreatedData(
                channel="telegram",
                connection_id=CONNECTION_ID,
                kind="direct",
                title="Ada Lovelace",
                external_id="5551234",
            ),
        ),
        (
            ev.MessageReceived,
            CONVERSATION_ID,
            connector,
            ev.MessageReceivedData(
                message_id=MESSAGE_ID,
                connection_id=CONNECTION_ID,
                channel="telegram",
                provider_message_id="5551234:1042",
                sender=_TELEGRAM_SENDER,
                text="Can you move my dentist appointment to Friday?",
                sent_at=AT,
                attachments=(ev.Attachment(kind="image", provider_file_id="AgACAgQAAxk", mime="image/jpeg"),),
            ),
        ),
        (
            ev.MediaAvailable,
            CONVERSATION_ID,
            connector,
            ev.MediaAvailableData(
                message_id=MESSAGE_ID,
                media_id="md_01JD3V5W4D5E6F7G8H9J0K1M2N",
                sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                mime="image/jpeg",
                size=48213,
                storage_key="t_01JD3V5W3Q8Z6Y1T0N4X2M7K9B/md_01JD3V5W4D5E6F7G8H9J0K1M2N",
            ),
        ),
        (
            ev.ReactionAdded,
            CONVERSATION_ID,
            connector,
            ev.ReactionData(message_id=MESSAGE_ID, emoji="👍", sender_id="tg:5551234"),
        ),
        (
            ev.ReactionRemoved,
            CONVERSATION_ID,
            connector,
            ev.ReactionData(message_id=MESSAGE_ID, emoji="👍", sender_id="tg:5551234"),
        ),
        (
            ev.ConversationSummarized,
            CONVERSATION_ID,
            agent,
            ev.ConversationSummarizedData(
                summary="Ada Lovelace: Can we move Thursday's appointment?",
                through_message_id=MESSAGE_ID,
                through_sent_at=AT,
                messages=1,
            ),
        ),
        (
            ev.AgentConfigured,
            AGENT_ID,
            user,
            ev.AgentConfiguredData(
                name="Moltbot",
                model="claude-sonnet-4-6",
                system_prompt="You are Ada's personal assistant. Be brief and kind.",
                rules=ev.AgentRoutingRules(channels=("telegram", "webchat"), quiet_hours=(22, 7)),
                template="personal_assistant",
            ),
        ),
        (
            ev.AgentRunRequested,
            CONVERSATION_ID,
            agent,
            ev.AgentRunRequestedData(run_id=RUN_ID, agent_id=AGENT_ID, trigger_message_id=MESSAGE_ID),
        ),
        (
            ev.AgentRunStarted,
            CONVERSATION_ID,
            agent,
            ev.AgentRunStartedData(run_id=RUN_ID, model="offline-1"),
        ),
        (
            ev.MessageSendRequested,
            CONVERSATION_ID,
            agent,
            ev.MessageSendRequestedData(
                message_id=REPLY_ID,
                connection_id=CONNECTION_ID,
                channel="telegram",
                to="5551234",
                text="Done: I asked the clinic to move it to Friday 10:00.",
                sender=_AGENT,
                reply_to_message_id=MESSAGE_ID,
                agent_run_id=RUN_ID,
            ),
        ),
        (
            ev.MessageSendReleased,
            CONVERSATION_ID,
            "system:scheduler",
            ev.MessageSendRequestedData(
                message_id=SCHEDULED_ID,
                connection_id=CONNECTION_ID,
                channel="telegram",
                to="5551234",
                text="Good morning! Your table for two is ready at 8.",
                sender=ev.Sender(id=f"user:{USER_ID}", name="Ada"),
                send_at=datetime(2026, 11, 25, 7, 0, 0, tzinfo=UTC),
            ),
        ),
        (
            ev.MessageSendCancelled,
            CONVERSATION_ID,
            user,
            ev.MessageSendCancelledData(message_id=SCHEDULED_ID),
        ),
        (
            ev.MessageSent,
            CONVERSATION_ID,
            connector,
            ev.MessageSentData(
                message_id=REPLY_ID,
                connection_id=CONNECTION_ID,
                channel="telegram",
                provider_message_id="5551234:1043",
                text="Done: I asked the clinic to move it to Friday 10:00.",
                sent_at=AT,
                sender=_AGENT,
                agent_run_id=RUN_ID,
                model="offline-1",
                tokens_in=412,
                tokens_out=37,
            ),
        ),
        (
            ev.AgentRunCompleted,
            CONVERSATION_ID,
            agent,
            ev.AgentRunCompletedData(
                run_id=RUN_ID,
                model="offline-1",
                tokens_in=412,
                tokens_out=37,
                cost_micros=0,
                reply_message_id=REPLY_ID,
            ),
        ),
        (
            ev.AgentRunFailed,
            CONVERSATION_ID,
            agent,
            ev.AgentRunFailedData(
                run_id=RUN_ID, code="model_timeout", reason="No answer from the model in 60 s"
            ),
        ),
        (
            ev.UsageRecorded,
            TENANT_ID,
            agent,
            ev.UsageRecordedData(metric="tokens_in", quantity=412, source_id=RUN_ID),
        ),
        (
            ev.MessageEdited,
            CONVERSATION_ID,
            connector,
            ev.MessageEditedData(
                message_id=MESSAGE_ID,
                text="Can you move my dentist appointment to Friday morning?",
                edited_at=AT,
            ),
        ),
        (
            ev.MessageSendFailed,
            CONVERSATION_ID,
            connector,
            ev.MessageSendFailedData(
                message_id=REPLY_ID,
                connection_id=CONNECTION_ID,
                code="rate_limited",
                reason="Telegram asked us to wait; gave up after 5 attempts",
            ),
        ),
        (
            ev.MessageDeleted,
            CONVERSATION_ID,
            connector,
            ev.MessageDeletedData(message_id=MESSAGE_ID, deleted_at=AT),
        ),
        (
            ev.MessageStatusChanged,
            CONVERSATION_ID,
            "connector:whatsapp:cn_01JD3V5W3S4N5P6Q7R8S9T0V1W",
            ev.MessageStatusChangedData(
                connection_id=CONNECTION_ID,
                provider_message_id="15551230000@s.whatsapp.net:3EB0C0FFEE",
                status="read",
                at=AT,
            ),
        ),
        (
            ev.ConversationUpdated,
            CONVERSATION_ID,
            user,
            ev.ConversationUpdatedData(pinned=True, marked_read=True, agent_mode="draft"),
        ),
        (ev.ContactMerged, CONTACT_ID, user, ev.ContactMergedData(merged_contact_id=OTHER_CONTACT_ID)),
        (
            ev.ContactSplit,
            CONTACT_ID,
            user,
            ev.ContactSplitData(identity_id=IDENTITY_ID, new_contact_id=OTHER_CONTACT_ID),
        ),
        (ev.ContactNotesSet, CONTACT_ID, user, ev.ContactNotesSetData(notes="Prefers WhatsApp after 6 pm.")),
        (
            ev.MemoryFactProposed,
            TENANT_ID,
            "agent:orchestrator",
            ev.MemoryFactProposedData(
                fact_id=FACT_ID,
                text="Ada prefers appointments after 4 pm",
                conversation_id=CONVERSATION_ID,
                run_id=RUN_ID,
            ),
        ),
        (
            ev.MemoryFactApproved,
            TENANT_ID,
            user,
            ev.MemoryFactApprovedData(
                fact_id=FACT_ID,
                text="Ada prefers appointments after 4 pm, never on Fridays",
                conversation_id=CONVERSATION_ID,
            ),
        ),
        (ev.MemoryFactForgotten, TENANT_ID, user, ev.MemoryFactForgottenData(fact_id=FACT_ID)),
        (
            ev.AgentRoutingSet,
            TENANT_ID,
            user,
            ev.AgentRoutingSetData(
                rules=(
                    ev.RoutingRule(agent_id=AGENT_ID, name="Refunds to Support", keyword="refund"),
                    ev.RoutingRule(agent_id=AGENT_ID, channel="slack", conversation_kind="thread"),
                )
            ),
        ),
        (
            ev.ConnectionAgentSettingsChanged,
            CONNECTION_ID,
            user,
            ev.ConnectionAgentSettingsChangedData(
                agent_mode="auto", takeover_minutes=45, dm_policy="pairing"
            ),
        ),
        (
            ev.ConnectionSenderRequested,
            CONNECTION_ID,
            "agent:orchestrator",
            ev.ConnectionSenderRequestedData(
                sender_id=_TELEGRAM_SENDER.id,
                sender_name=_TELEGRAM_SENDER.name,
                conversation_id=CONVERSATION_ID,
                message_id=MESSAGE_ID,
                code="K7QW-M3XP",
            ),
        ),
        (
            ev.ConnectionSenderApproved,
            CONNECTION_ID,
            user,
            ev.ConnectionSenderDecidedData(sender_id=_TELEGRAM_SENDER.id, via="code"),
        ),
        (
            ev.ConnectionSenderBlocked,
            CONNECTION_ID,
            user,
            ev.ConnectionSenderDecidedData(sender_id="tg:5559999"),
        ),
        (
            ev.ConversationAgentPaused,
            CONVERSATION_ID,
            user,
            ev.ConversationAgentPausedData(
                reason="human_replied",
                until=datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC),
                message_id=REPLY_ID,
            ),
        ),
        (
            ev.ConversationSnoozed,
            CONVERSATION_ID,
            user,
            ev.ConversationSnoozedData(until=datetime(2026, 11, 25, 9, 0, 0, tzinfo=UTC)),
        ),
        (
            ev.FollowUpScheduled,
            CONVERSATION_ID,
            user,
            ev.FollowUpScheduledData(
                follow_up_id=FOLLOW_UP_ID,
                due_at=datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC),
                note="Did Ada confirm the Friday appointment?",
            ),
        ),
        (
            ev.ReminderDue,
            CONVERSATION_ID,
            "system:scheduler",
            ev.ReminderDueData(follow_up_id=FOLLOW_UP_ID, note="Did Ada confirm the Friday appointment?"),
        ),
        (ev.FollowUpCancelled, CONVERSATION_ID, user, ev.FollowUpCancelledData(follow_up_id=FOLLOW_UP_ID)),
        (
            ev.ConversationAgentResumed,
            CONVERSATION_ID,
            user,
            ev.ConversationAgentResumedData(reason="owner"),
        ),
        (
            ev.MessageDraftProposed,
            CONVERSATION_ID,
            agent,
            ev.MessageDraftProposedData(
                draft_id=DRAFT_ID,
                run_id=RUN_ID,
                connection_id=CONNECTION_ID,
                channel="telegram",
                to="5551234",
                text="Friday at 9:00 works. See you then!",
                reply_to_message_id=MESSAGE_ID,
            ),
        ),
        (
            ev.MessageDraftDiscarded,
            CONVERSATION_ID,
            user,
            ev.MessageDraftDiscardedData(draft_id=DRAFT_ID),
        ),
        (
            ev.DevicePaired,
            DEVICE_ID,
            user,
            ev.DevicePairedData(
                name="Ada's Mac",
                platform="macos",
                user_id=USER_ID,
                public_key="5cK1xjJHbW4c3hV8XGm1nO4wZt9sJdC5pQ0Rr2Ym9kA",
                fingerprint="SHA256:q3v0t6hB2yK7cJmX4nW1sPz8fLd9rGe5uAo2iYkTbVc",
            ),
        ),
        (
            ev.DeviceStateChanged,
            DEVICE_ID,
            "device:" + DEVICE_ID,
            ev.DeviceStateChangedData(
                state="online",
                reason="connected",
                version="0.1.0",
                capabilities=("imessage.read", "imessage.send"),
            ),
        ),
        (ev.DeviceRevoked, DEVICE_ID, user, ev.DeviceRevokedData(reason="lost laptop")),
        (ev.MemberRemoved, TENANT_ID, user, ev.MemberRemovedData(user_id=USER_ID)),
        (ev.ConnectionDeleted, CONNECTION_ID, user, ev.ConnectionDeletedData(reason="disconnected by user")),
        (
            ev.RetentionApplied,
            TENANT_ID,
            "retention",
            ev.RetentionAppliedData(before=date(2026, 10, 27), history_days=30, data_keys_shredded=1),
        ),
        (
            ev.TenantErased,
            TENANT_ID,
            user,
            ev.TenantErasedData(reason="deleted_by_owner", data_keys_shredded=42),
        ),
        (
            ev.SubscriptionChanged,
            TENANT_ID,
            "billing:stripe",
            ev.SubscriptionChangedData(
                customer_id="cus_R2xY7bQ4mN8kLp",
                subscription_id="sub_1QxY7bQ4mN8kLpZc3D5eF6gH",
                status="active",
                plan="pro",
                price_id="price_1QxY7bQ4mN8kLpPro",
                current_period_end=datetime(2026, 12, 24, 9, 30, 0, tzinfo=UTC),
                stripe_event_id="evt_1QxY7bQ4mN8kLpZc9T8s7R6q",
            ),
        ),
        (
            ev.UserPreferencesChanged,
            USER_ID,
            user,
            ev.UserPreferencesChangedData(
                time_zone="Europe/Berlin", quiet_hours=ev.QuietHours(start=22, end=7), digest_hour=8
            ),
        ),
        (ev.DigestDue, USER_ID, "system:scheduler", ev.DigestDueData(date=date(2026, 11, 25))),
        (
            ev.FollowUpProposed,
            CONVERSATION_ID,
            agent,
            ev.FollowUpProposedData(
                follow_up_id=PROPOSED_FOLLOW_UP_ID,
                due_at=datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC),
                note="They said: I'll get back to you Friday.",
                message_id=MESSAGE_ID,
            ),
        ),
        (
            ev.AwaySet,
            TENANT_ID,
            user,
            ev.AwaySetData(
                away_id=AWAY_ID,
                until=datetime(2026, 11, 30, 8, 0, 0, tzinfo=UTC),
                message="I'm away until Monday and will answer then.",
                connection_ids=(CONNECTION_ID,),
            ),
        ),
        (ev.AwayEnded, TENANT_ID, user, ev.AwayEndedData(away_id=AWAY_ID, reason="returned")),
    ]
    return [
        _make(cls, aggregate_id, actor, data, n) for n, (cls, aggregate_id, actor, data) in enumerate(specs)
    ]
