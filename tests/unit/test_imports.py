"""What an import batch becomes: history the agent never answers, named from the source so a
rerun names the same things, and model usage that is never a cost."""

from __future__ import annotations

from datetime import UTC, datetime

from domain import agent as policy
from domain import events as ev
from domain import imports
from domain.imports import ImportedConversation, ImportedMessage

CONVERSATION = ImportedConversation(key="agent:main:telegram:dm:5", channel="telegram", peer="5", title="Kim")
AT = datetime(2026, 1, 20, 9, 0, tzinfo=UTC)


def _message(direction: str, **changes: object) -> ImportedMessage:
    base = {"line": "main/s:1", "conversation": CONVERSATION.key, "direction": direction, "text": "hi",
            "sent_at": AT, "tokens_in": 0, "tokens_out": 0} | changes  # fmt: skip
    return ImportedMessage(**base)  # type: ignore[arg-type]


def test_the_same_source_names_the_same_import_conversation_and_message() -> None:
    first = imports.import_id("t_1", "openclaw", "/home/kim/.openclaw")
    assert first == imports.import_id("t_1", "openclaw", "/home/kim/.openclaw")
    assert first != imports.import_id("t_2", "openclaw", "/home/kim/.openclaw")  # never across inboxes
    [created] = imports.conversation_events("t_1", first, [CONVERSATION], at=AT)
    [received] = imports.message_events("t_1", first, _message("in"), CONVERSATION)
    [again] = imports.message_events("t_1", first, _message("in"), CONVERSATION)
    assert isinstance(created, ev.ConversationCreated) and isinstance(received, ev.MessageReceived)
    assert received.aggregate_id == created.aggregate_id
    assert received.data.message_id == again.data.message_id  # type: ignore[attr-defined]
    assert received.data.connection_id == created.data.connection_id
    assert not created.data.agent_enabled


def test_imported_messages_are_history_at_their_own_time_and_never_answered() -> None:
    [received] = imports.message_events("t_1", "im_1", _message("in"), CONVERSATION)
    assert isinstance(received, ev.MessageReceived)
    assert received.data.backfill and received.occurred_at == received.data.sent_at == AT
    situation = policy.Situation(
        message=received.data, conversation_kind="direct", mode="auto", budget_left=True, at=AT,
        received_at=AT,
        agent=ev.AgentConfiguredData(name="Pico", model="claude-haiku-4-5", system_prompt="Be brief."),
    )  # fmt: skip
    decided = policy.decide(situation)
    assert (decided.verdict, decided.reason) == ("skip", "backfill")


def test_an_answers_usage_is_token_counts_named_by_the_import_never_a_cost() -> None:
    events = imports.message_events(
        "t_1", "im_1", _message("out", model="claude-sonnet-4-5", tokens_in=900, tokens_out=40), CONVERSATION
    )
    sent, *usage = events
    assert isinstance(sent, ev.MessageSent) and sent.data.backfill and sent.data.sender.is_bot
    metrics = {(u.data.metric, u.data.quantity, u.data.source_id) for u in usage}  # type: ignore[attr-defined]
    assert metrics == {("tokens_in", 900, f"import:{sent.data.message_id}"),
                       ("tokens_out", 40, f"import:{sent.data.message_id}")}  # fmt: skip


def test_a_very_long_message_is_cut_and_says_so() -> None:
    [received] = imports.message_events("t_1", "im_1", _message("in", text="x" * 70_000), CONVERSATION)
    assert isinstance(received, ev.MessageReceived)
    assert len(received.data.text) <= imports.MAX_TEXT and received.data.text.endswith(
        "the message was longer]"
    )
