"""Teams Activities → canonical events, as tables (pure: no Bot Connector, no network); the
Activities have the shapes Teams posts to a bot (personal chats, channel threads with an
@mention, edits, soft deletes, reactions, the app installed). Also the conversation
reference a send is addressed with, reaction names as emoji, and what each refusal of
Microsoft's means for a send or for a person connecting."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.channels.errors import ProviderUnreachable, TokenRejected
from adapters.channels.teams.client import App, ConnectorError, LoginError, refusal_for_person
from adapters.channels.teams.connector import CREDENTIALS_REVOKED, login_refusal, send_refusal
from adapters.channels.teams.normalize import (
    Reference,
    conversation_id,
    emoji,
    message_id,
    normalize,
    parse_reference,
    reference,
)
from domain import events as ev
from domain import ids
from domain.connectors import SendDeferred, SendRejected

TENANT, CONNECTION = "t_1", "cn_1"
APP_ID = "6f6b1c3e-0c55-4a4b-9d1e-3b1d3c1a2b3c"
BOT = f"28:{APP_ID}"
SERVICE_URL = "https://smba.trafficmanager.net/emea/"
PERSONAL = "a:1Vz8nB3uW5qXl2m0Y7pQ9rT4sK6jH1gF"
THREAD = "19:0b6f5d8c1e2a4b3c9d7e6f5a4b3c2d1e@thread.tacv2;messageid=1732630000000"
GROUP = "19:meeting_NjQ4ZTk5YzUtZWI1ZS00@thread.v2"
ADA = {"id": "29:1GcS4EyB_oSI8A88XmWBN7NJFyMqe3QGnJdgLfFGkJnVelzRGos0bPbpsfJjcbAD22bmKc4GMbrY2g4JDrWA8Rg",
       "name": "Ada Lovelace", "aadObjectId": "6b5a3c1e-0000-4000-8000-00000000ada0"}  # fmt: skip
STAMP = "2026-11-26T16:05:12.3456789Z"
AT = datetime(2026, 11, 26, 16, 5, 12, 345679, tzinfo=UTC)


def _activity(kind: str = "message", conversation: str = PERSONAL, **fields: Any) -> dict[str, Any]:
    types = {PERSONAL: "personal", THREAD: "channel", GROUP: "groupChat"}
    activity: dict[str, Any] = {
        "type": kind,
        "id": "1732637112345",
        "timestamp": STAMP,
        "localTimestamp": "2026-11-26T17:05:12.3456789+01:00",
        "serviceUrl": SERVICE_URL,
        "channelId": "msteams",
        "from": ADA,
        "conversation": {"conversationType": types[conversation], "tenantId": "72f988bf-86f1-41af-91ab",
                         "id": conversation},
        "recipient": {"id": BOT, "name": "Moltbot"},
        "channelData": {"tenant": {"id": "72f988bf-86f1-41af-91ab"}},
        "locale": "en-US",
    }  # fmt: skip
    if kind == "message":
        activity |= {"textFormat": "plain", "text": "Can you send me the invoice?", "attachments": [],
                     "entities": [{"type": "clientInfo", "locale": "en-US", "platform": "Web"}]}  # fmt: skip
    if conversation == THREAD:
        activity["channelData"] |= {
            "teamsChannelId": "19:0b6f5d8c1e2a4b3c9d7e6f5a4b3c2d1e@thread.tacv2",
            "teamsTeamId": "19:team@thread.tacv2",
            "channel": {"id": "19:0b6f5d8c1e2a4b3c9d7e6f5a4b3c2d1e@thread.tacv2", "name": "Billing"},
            "team": {"id": "19:team@thread.tacv2", "name": "Contoso"},
        }
    return activity | fields


def _mentioning(conversation: str, text: str = "what is the status?") -> dict[str, Any]:
    at = "<at>Moltbot</at>"
    entities = [{"type": "mention", "mentioned": {"id": BOT, "name": "Moltbot"}, "text": at}]
    return _activity(conversation=conversation, text=f"{at} {text}", entities=entities)


def _normalize(payload: dict[str, Any]) -> tuple[ev.ConversationCreated | None, list[ev.Event]]:
    delivery = normalize(payload, tenant_id=TENANT, connection_id=CONNECTION, app_id=APP_ID)
    return delivery.created, list(delivery.events)


def _received(payload: dict[str, Any]) -> ev.MessageReceivedData:
    _, [received] = _normalize(payload)
    assert isinstance(received, ev.MessageReceived)
    return received.data


# --- what is carried ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "types"),
    [
        (_activity(), ["message.received"]),
        (_mentioning(THREAD), ["message.received"]),
        (_mentioning(GROUP), ["message.received"]),
        (_activity(conversation=THREAD, text="talking among ourselves"), []),  # no mention: not the bot's
        (_activity(conversation=GROUP, text="lunch?"), []),
        (_activity(text=""), []),  # a file or an image alone: not carried yet
        (_activity(text="", value={"action": "approve"}), []),  # an Adaptive Card's submit
        (_activity(**{"from": {"id": BOT, "name": "Moltbot"}}), []),  # the bot itself
        (_activity(channelId="webchat"), []),  # another channel of the same bot
        (_activity("typing"), []),
        (_activity("invoke", name="adaptiveCard/action"), []),
        (_activity("installationUpdate", action="add"), []),
        (
            _activity(
                "messageUpdate",
                text="Can you send me the invoice, please?",
                channelData={"eventType": "editMessage"},
            ),
            ["message.edited"],
        ),
        (_activity("messageUpdate", channelData={"eventType": "undeleteMessage"}), []),
        (_activity("messageDelete", channelData={"eventType": "softDeleteMessage"}), ["message.deleted"]),
        (
            _activity("messageReaction", replyToId="1732637000000", reactionsAdded=[{"type": "like"}]),
            ["reaction.added"],
        ),
        (
            _activity("messageReaction", replyToId="1732637000000", reactionsRemoved=[{"type": "heart"}]),
            ["reaction.removed"],
        ),
        (_activity("messageReaction", reactionsAdded=[{"type": "like"}]), []),  # reacting to nothing
        (_activity("conversationUpdate", membersAdded=[{"id": BOT}]), []),  # creates the chat, no event
        (_activity("conversationUpdate", membersAdded=[{"id": ADA["id"]}]), []),
    ],
)
def test_what_each_activity_becomes(payload: dict[str, Any], types: list[str]) -> None:
    _, events = _normalize(payload)
    assert [event.type for event in events] == types


def test_a_personal_message_is_received_in_its_chat_with_its_reference() -> None:
    created, [received] = _normalize(_activity())
    assert isinstance(received, ev.MessageReceived)
    conversation = ids.stable_id("c", f"teams:{CONNECTION}:{PERSONAL}")
    assert received.aggregate_id == conversation
    assert received.actor == f"connector:teams:{CONNECTION}"
    assert received.data == ev.MessageReceivedData(
        message_id=ids.stable_id("m", f"teams:{CONNECTION}:{PERSONAL}/1732637112345"),
        connection_id=CONNECTION,
        channel="teams",
        provider_message_id=f"{PERSONAL}/1732637112345",
        sender=ev.Sender(id=f"teams:{ADA['id']}", name="Ada Lovelace"),
        text="Can you send me the invoice?",
        sent_at=AT,
        mentions_agent=False,
    )
    assert created is not None and created.aggregate_id == conversation
    assert created.data == ev.ConversationCreatedData(
        channel="teams", connection_id=CONNECTION, kind="direct", title="Ada Lovelace",
        external_id=f"{PERSONAL}|{SERVICE_URL}|{BOT}",
    )  # fmt: skip
    assert parse_reference(created.data.external_id) == Reference(PERSONAL, SERVICE_URL, BOT)


@pytest.mark.parametrize(
    ("conversation", "kind", "title"),
    [(THREAD, "thread", "Thread in Contoso / Billing"), (GROUP, "group", "Teams group chat")],
)
def test_a_mention_outside_a_personal_chat_is_received_without_it(
    conversation: str, kind: str, title: str
) -> None:
    created, [received] = _normalize(_mentioning(conversation))
    assert isinstance(received, ev.MessageReceived)
    assert (received.data.text, received.data.mentions_agent) == ("what is the status?", True)
    assert created is not None and (created.data.kind, created.data.title) == (kind, title)
    # The thread is its own conversation: a reply posted to it stays in the thread.
    assert parse_reference(created.data.external_id).conversation_id == conversation


@pytest.mark.parametrize(
    ("text", "entities", "shown"),
    [
        ("<at>Moltbot</at> hi", [("Moltbot", BOT)], "hi"),
        (
            "hi <at>Moltbot</at>, and <at>Grace Hopper</at> too",
            [("Moltbot", BOT), ("Grace Hopper", "29:1gh")],
            "hi , and @Grace Hopper too",
        ),
        ("<at>Moltbot</at>\n\nline one\nline two", [("Moltbot", BOT)], "line one\nline two"),
        ("<at>Moltbot</at>   spaced   out", [("Moltbot", BOT)], "spaced out"),
        ("<at>Someone</at> without an entity", [], "Someone without an entity"),
    ],
)
def test_mentions_are_taken_out_of_the_text(text: str, entities: list[tuple[str, str]], shown: str) -> None:
    mentions = [
        {"type": "mention", "mentioned": {"id": account, "name": name}, "text": f"<at>{name}</at>"}
        for name, account in entities
    ]
    assert _received(_activity(text=text, entities=mentions)).text == shown


def test_a_mention_of_someone_else_in_a_channel_is_not_the_bots() -> None:
    at = "<at>Grace Hopper</at>"
    entities = [{"type": "mention", "mentioned": {"id": "29:1gh", "name": "Grace Hopper"}, "text": at}]
    assert _normalize(_activity(conversation=THREAD, text=f"{at} see this", entities=entities)) == (None, [])


def test_edits_deletes_and_reactions_name_the_message_by_conversation_and_activity() -> None:
    original = message_id(CONNECTION, PERSONAL, "1732637112345")
    _, [edited] = _normalize(
        _activity("messageUpdate", text="the invoice for May", channelData={"eventType": "editMessage"})
    )
    assert isinstance(edited, ev.MessageEdited)
    assert edited.data == ev.MessageEditedData(message_id=original, text="the invoice for May", edited_at=AT)
    _, [deleted] = _normalize(_activity("messageDelete", channelData={"eventType": "softDeleteMessage"}))
    assert isinstance(deleted, ev.MessageDeleted)
    assert deleted.data == ev.MessageDeletedData(message_id=original, deleted_at=AT)
    reacted = _activity(
        "messageReaction",
        replyToId="1732637112345",
        reactionsAdded=[{"type": "like"}, {"type": "1f440_eyes"}],
    )
    _, [like, eyes] = _normalize(reacted)
    assert isinstance(like, ev.ReactionAdded) and isinstance(eyes, ev.ReactionAdded)
    assert like.data == ev.ReactionData(message_id=original, emoji="👍", sender_id=f"teams:{ADA['id']}")
    assert eyes.data.emoji == "👀"
    assert {e.aggregate_id for e in (edited, deleted, like)} == {conversation_id(CONNECTION, PERSONAL)}


def test_an_edit_in_a_channel_is_carried_only_while_it_mentions_the_bot() -> None:
    edit = _mentioning(THREAD, "the status of order 7?") | {"type": "messageUpdate"}
    _, [edited] = _normalize(edit)
    assert isinstance(edited, ev.MessageEdited) and edited.data.text == "the status of order 7?"
    unmentioned = _activity("messageUpdate", conversation=THREAD, text="never mind")
    assert _normalize(unmentioned) == (None, [])


def test_installing_the_app_creates_the_personal_chat_so_a_reply_can_reach_it() -> None:
    created, events = _normalize(_activity("conversationUpdate", membersAdded=[{"id": BOT}]))
    assert events == []
    assert created is not None and created.data.kind == "direct"
    assert created.aggregate_id == conversation_id(CONNECTION, PERSONAL)
    assert parse_reference(created.data.external_id) == Reference(PERSONAL, SERVICE_URL, BOT)
    in_a_team = _activity("conversationUpdate", conversation=THREAD, membersAdded=[{"id": BOT}])
    assert _normalize(in_a_team) == (None, [])


def test_a_redelivered_activity_makes_the_same_ids() -> None:
    for payload in (
        _activity(),
        _activity("messageUpdate", text="edited", channelData={"eventType": "editMessage"}),
        _activity("messageDelete"),
        _activity("messageReaction", replyToId="1732637000000", reactionsAdded=[{"type": "laugh"}]),
    ):
        _, first = _normalize(payload)
        _, again = _normalize(copy.deepcopy(payload))
        if payload["type"] == "message":  # keyed by its provider id (Nats-Msg-Id) and message id
            assert [e.data.message_id for e in first] == [e.data.message_id for e in again]  # type: ignore[attr-defined]
        else:  # event ids derived from the Activity
            assert [e.id for e in first] == [e.id for e in again]


def test_a_body_that_is_not_an_activity_is_a_value_error() -> None:
    for body in (b"{not json", b"[]", b'{"type": "message"}', b'{"type": 1, "serviceUrl": "x"}'):
        with pytest.raises(ValueError, match=r"JSON|Expected|missing required field"):
            normalize(body, tenant_id=TENANT, connection_id=CONNECTION, app_id=APP_ID)
    with pytest.raises(msgspec.ValidationError):
        normalize(_activity(timestamp="yesterday"), tenant_id=TENANT, connection_id=CONNECTION, app_id=APP_ID)


# --- the conversation reference ---------------------------------------------------------------------


@given(
    conversation=st.text(
        alphabet=st.characters(blacklist_characters="|", blacklist_categories=("Cs",)), min_size=1
    ),
    region=st.sampled_from(["amer", "emea", "apac", "teams/de"]),
    app=st.uuids(),
)
def test_a_reference_reads_back_as_written(conversation: str, region: str, app: Any) -> None:
    ref = Reference(conversation, f"https://smba.trafficmanager.net/{region}/", f"28:{app}")
    assert parse_reference(reference(ref)) == ref


@pytest.mark.parametrize(
    "external_id",
    [
        "a:1abc",
        f"{PERSONAL}|{SERVICE_URL}",
        f"{PERSONAL}|ftp://x/|{BOT}",
        f"|{SERVICE_URL}|{BOT}",
        f"{PERSONAL}||{BOT}",
    ],
)
def test_what_is_not_a_reference_is_refused(external_id: str) -> None:
    with pytest.raises(ValueError, match="conversation reference"):
        parse_reference(external_id)


@pytest.mark.parametrize(
    ("teams", "shown"),
    [
        ("like", "👍"),
        ("heart", "❤️"),
        ("laugh", "😆"),
        ("surprised", "😮"),
        ("sad", "😢"),
        ("angry", "😠"),
        ("1f440_eyes", "👀"),
        ("1f44d-1f3fd_thumbsuplight", "👍🏽"),
        ("d800_broken", "d800_broken"),  # a lone surrogate is no emoji
        ("yes", "yes"),
    ],
)
def test_reactions_become_emoji(teams: str, shown: str) -> None:
    assert emoji(teams) == shown


# --- what Microsoft's refusals mean ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "outcome", "code"),
    [
        (
            LoginError(401, "invalid_client", "AADSTS7000222: expired", (7000222,)),
            SendRejected,
            CREDENTIALS_REVOKED,
        ),
        (
            LoginError(400, "unauthorized_client", "AADSTS700016: not found", (700016,)),
            SendRejected,
            CREDENTIALS_REVOKED,
        ),
        (LoginError(403, "", "forbidden"), SendRejected, CREDENTIALS_REVOKED),
        (LoginError(400, "invalid_scope", "AADSTS70011: bad scope", (70011,)), SendRejected, "login_refused"),
        (LoginError(0, "unreachable", "no route"), SendDeferred, None),
        (LoginError(503, "temporarily_unavailable", "busy"), SendDeferred, None),
        (LoginError(429, "", "slow down", retry_after=12), SendDeferred, None),
    ],
)
def test_what_a_token_refusal_means_for_a_send(error: LoginError, outcome: type, code: str | None) -> None:
    mapped = login_refusal(error)
    assert isinstance(mapped, outcome)
    if isinstance(mapped, SendRejected):
        assert mapped.code == code
    else:
        assert mapped.retry_after == error.retry_after


@pytest.mark.parametrize(
    ("status", "outcome", "code"),
    [
        (429, SendDeferred, None),
        (502, SendDeferred, None),
        (0, SendDeferred, None),
        (401, SendDeferred, None),  # our token: the retry fetches another
        (403, SendRejected, "not_in_conversation"),
        (404, SendRejected, "conversation_not_found"),
        (413, SendRejected, "too_long"),
        (400, SendRejected, "bad_request"),
    ],
)
def test_what_a_connector_refusal_means_for_a_send(status: int, outcome: type, code: str | None) -> None:
    mapped = send_refusal(
        ConnectorError(status, "SomeCode", "words", retry_after=3 if status == 429 else None)
    )
    assert isinstance(mapped, outcome)
    if isinstance(mapped, SendRejected):
        assert mapped.code == code
    if status == 429:
        assert isinstance(mapped, SendDeferred) and mapped.retry_after == 3


@pytest.mark.parametrize(
    ("error", "app", "field"),
    [
        (
            LoginError(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.", (7000215,)),
            App(APP_ID, "s"),
            "client_secret",
        ),
        (
            LoginError(400, "unauthorized_client", "AADSTS700016: not found", (700016,)),
            App(APP_ID, "s"),
            "app_id",
        ),
        (
            LoginError(400, "invalid_request", "AADSTS90002: Tenant not found", (90002,)),
            App(APP_ID, "s", "contoso.example"),
            "tenant_id",
        ),
    ],
)
def test_a_person_connecting_is_told_which_field_to_fix(error: LoginError, app: App, field: str) -> None:
    told = refusal_for_person(error, app)
    assert isinstance(told, TokenRejected) and told.field == field
    if field == "app_id":
        assert "Single Tenant" in str(told)  # the bot may be single-tenant: say where the tenant id is


def test_an_outage_while_connecting_is_said_to_be_one() -> None:
    told = refusal_for_person(LoginError(503, "", "Service Unavailable"), App(APP_ID, "s"))
    assert isinstance(told, ProviderUnreachable)
