"""``moltbot migrate``'s own logic: batching history, and waiting out an inbox that lags."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import stamina

from domain.imports import ImportedConversation, ImportedMessage
from moltbot import client
from moltbot.cli import migrate


def _pair(conversation: str, n: int) -> tuple[ImportedConversation, ImportedMessage]:
    message = ImportedMessage(
        line=f"{conversation}:{n}", conversation=conversation, direction="in", text=f"m{n}",
        sent_at=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    return ImportedConversation(key=conversation), message


def test_each_conversation_rides_in_the_batch_of_its_first_message() -> None:
    history = [_pair("a", n) for n in range(3)] + [_pair("b", n) for n in range(3)]
    batches = list(migrate.batches(history, size=4))
    assert [[c.key for c in b.conversations] for b in batches] == [["a", "b"], []]
    assert [len(b.messages) for b in batches] == [4, 2]
    assert [b.messages for b in migrate.batches([], size=4)] == [[]]  # one empty batch: nothing to send


class _Lagging:
    def __init__(self, lag: int) -> None:
        self.calls = 0
        self.lag = lag

    async def post(self, path: str, body: Any) -> Any:
        self.calls += 1
        if self.calls <= self.lag:
            raise client.ClientError("503 not yet", status=503, code="not_caught_up")
        return {"seq": 7}


async def test_a_batch_is_sent_again_while_the_inbox_catches_up() -> None:
    stamina.set_testing(True, attempts=10)
    try:
        api = _Lagging(lag=2)
        assert await migrate._post_batch(api, "/v1/imports/x/batches", {}) == {"seq": 7}  # type: ignore[arg-type]
        assert api.calls == 3
        refused = _Lagging(lag=0)

        async def bad(path: str, body: Any) -> Any:
            refused.calls += 1
            raise client.ClientError("400 no", status=400, code="invalid_request")

        refused.post = bad  # type: ignore[method-assign]
        with pytest.raises(client.ClientError, match="400 no"):
            await migrate._post_batch(refused, "/v1/imports/x/batches", {})  # type: ignore[arg-type]
        assert refused.calls == 1  # what the inbox refuses is not sent again
    finally:
        stamina.set_testing(False)
