"""Every documented operation, fuzzed from the gateway's own OpenAPI schema (schemathesis).

Cases that fit the schema and cases that break it, from a signed-up tenant: no answer is a
5xx, and every 4xx carries the error body ``{"error": code, "detail": words}``.

The gateway runs in the test's event loop, so schemathesis (synchronous, over ``requests``)
runs in a worker thread against the live server while the loop keeps serving. Its ASGI
transport is no help here: it drives the app from a loop of its own, and the gateway's
NATS connection and PostgreSQL pool belong to this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.core.result import Err

from adapters.billing.config import StripeConfig
from adapters.channels.endpoints import ProviderEndpoints
from gateway.context import SlackApp
from tests.fakes.stripe_api import fake_stripe
from tests.fakes.telegram_api import FakeTelegram
from tests.integration.conftest import Stack
from tests.integration.test_gateway import _auth, _signup

EXAMPLES_PER_STRATEGY = 20
REQUEST_TIMEOUT = 20.0
# Event streams never end: read this long, then judge what came (the status and headers).
STREAM_TIMEOUT = 0.5
STREAMING = {("GET", "/v1/events")}
# Nothing is excluded: /v1/events is read for STREAM_TIMEOUT, the WebSocket route is not in
# the schema, and the only destructive operation (DELETE /v1/channels/{id}) removes a channel
# the test connected for it, not the tenant.
_PATH_PARAMETER = re.compile(r"{(\w+)}")


@pytest.fixture
def endpoints(all_fakes_endpoints: ProviderEndpoints) -> ProviderEndpoints:
    """Fuzzed bot tokens go to local fakes (which refuse them), never to the internet."""
    return all_fakes_endpoints


@pytest.fixture
def slack_app() -> SlackApp:
    return SlackApp(
        client_id="1234567890.0987654321",
        client_secret="s3cr3t",
        signing_secret="a-signing-secret",
        redirect_uri="https://moltbot.example/v1/channels/slack/oauth/callback",
    )


@pytest.fixture
async def billing() -> AsyncIterator[StripeConfig]:
    """Stripe at a local fake (with billing off, checkout answers 503 billing_off by design)."""
    async with fake_stripe("sk_test_fuzz", "whsec_fuzz", prices=["price_pro_fuzz"]) as stripe:
        yield StripeConfig(
            secret_key="sk_test_fuzz", webhook_secret="whsec_fuzz", prices={"pro": "price_pro_fuzz"},
            api_base=stripe.base_url,
        )  # fmt: skip


@dataclass(frozen=True)
class Failure:
    operation: str
    status: int | str
    problem: str
    response: str
    reproduce: str

    def __str__(self) -> str:
        return f"{self.operation} -> {self.status}: {self.problem}\n    {self.response}\n    {self.reproduce}"


def _problem(status: int, body: bytes) -> str | None:
    """What is wrong with an answer, or None."""
    if status >= 500:
        return "server error"
    if status < 400:
        return None
    try:
        error = json.loads(body)
    except ValueError:
        return "4xx without a JSON body"
    if not isinstance(error, dict) or not all(
        isinstance(error.get(key), str) and error[key] for key in ("error", "detail")
    ):
        return '4xx without {"error", "detail"}'
    return None


def _bounded_wait(case: Case[Any], reached_seq: int) -> None:
    """A ?min_seq= beyond the log waits 5 s for a 503 by design; cap it at a seq the read
    models have reached, keeping what is not a number for the validation to refuse."""
    min_seq = (case.query or {}).get("min_seq")
    if isinstance(min_seq, int) and not isinstance(min_seq, bool) and min_seq > reached_seq:
        case.query["min_seq"] = reached_seq


@dataclass
class Fuzzer:
    """Sends generated cases to the live gateway (blocking: run it in a worker thread) and
    keeps one failure per operation, status and problem."""

    base_url: str
    headers: dict[str, str]
    known: dict[str, str]  # real path parameters, by name
    reached_seq: int
    failures: dict[tuple[str, int | str, str], Failure] = field(default_factory=dict)
    requests_made: int = 0

    def operation(self, operation: APIOperation[Any, Any, Any, Any]) -> None:
        strategies: list[SearchStrategy[Case[Any]]] = [
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        ]
        # Generated ids mostly end in 404; real ones take the body's checks further.
        names = _PATH_PARAMETER.findall(operation.path)
        real = {name: self.known[name] for name in names if name in self.known}
        if real:
            strategies.append(
                operation.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=real)
            )
        for strategy in strategies:

            @settings(
                max_examples=EXAMPLES_PER_STRATEGY,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def send(case: Case[Any]) -> None:
                self.send(case)

            # Negative cases of an operation that takes no input cannot exist.
            with contextlib.suppress(Unsatisfiable):
                send()

    def send(self, case: Case[Any]) -> None:
        label = f"{case.method.upper()} {case.path}"
        streaming = (case.method.upper(), case.path) in STREAMING
        _bounded_wait(case, self.reached_seq)
        self.requests_made += 1
        reproduce = case.as_curl_command()
        try:
            response = case.call(
                base_url=self.base_url,
                headers=self.headers,
                timeout=STREAM_TIMEOUT if streaming else REQUEST_TIMEOUT,
            )
        except Exception as exc:
            failure = Failure(label, "no answer", type(exc).__name__, repr(exc)[:300], reproduce)
        else:
            problem = _problem(response.status_code, response.content)
            if problem is None:
                return
            excerpt = response.content[:300].decode(errors="replace")
            failure = Failure(label, response.status_code, problem, excerpt, reproduce)
        self.failures.setdefault((label, failure.status, failure.problem), failure)

    def schema(self, raw_schema: dict[str, Any]) -> list[Failure]:
        """Fuzz every operation of the schema; the failures found."""
        for result in schemathesis.openapi.from_dict(raw_schema).get_all_operations():
            if isinstance(result, Err):
                raise result.err()  # our own schema is invalid
            self.operation(result.ok())
        return list(self.failures.values())


@pytest.mark.slow
async def test_no_operation_answers_5xx_or_a_bare_4xx(
    api: httpx.AsyncClient, stack: Stack, tg: FakeTelegram
) -> None:
    owner = await _signup(api, "fuzz-owner@example.com")
    headers = _auth(owner)
    widget = (await api.get("/v1/webchat", headers=headers)).json()
    said = await api.post(f"/v1/webchat/{widget['widget_key']}/messages", json={"text": "hello"})
    assert said.status_code == 202, said.text
    connected = await api.post(
        "/v1/channels/telegram/connect", json={"bot_token": tg.add_bot("fuzz_bot", "Fuzz")}, headers=headers
    )
    assert connected.status_code == 202, connected.text
    reached_seq = await stack.wait_caught_up()
    conversations = (await api.get("/v1/conversations", headers=headers)).json()
    agents = (await api.get("/v1/agents", headers=headers)).json()
    known = {
        "key": widget["widget_key"],
        "conversation_id": conversations["items"][0]["conversation_id"],
        "agent_id": agents[0]["agent_id"],
        "connection_id": connected.json()["connection_id"],
    }
    schema_response = await api.get("/schema/openapi.json")
    assert schema_response.status_code == 200

    fuzzer = Fuzzer(str(api.base_url), headers, known, reached_seq)
    failures = await asyncio.to_thread(fuzzer.schema, schema_response.json())

    assert fuzzer.requests_made > 500
    assert not failures, "\n".join(str(failure) for failure in failures)


async def test_text_with_nul_is_refused_before_it_is_stored(api: httpx.AsyncClient, stack: Stack) -> None:
    # Found by the fuzzing above: PostgreSQL text cannot hold U+0000, so such a query was a
    # 500, and such a message was accepted and then refused by every read model.
    owner = await _signup(api, "nul@example.com")
    headers = _auth(owner)
    key = (await api.get("/v1/webchat", headers=headers)).json()["widget_key"]
    before = await stack.store.last_seq()
    refused = [
        await api.post(f"/v1/webchat/{key}/messages", json={"text": "he\u0000llo"}),
        await api.post("/v1/messages", json={"conversation_id": "c_1", "text": "a\u0000"}, headers=headers),
        await api.post("/v1/agents", json={"name": "Night\u0000owl"}, headers=headers),
        await api.get("/v1/search", params={"q": "a\u0000b"}, headers=headers),
        await api.get("/v1/conversations/c_1%00/messages", headers=headers),
    ]
    for response in refused:
        assert response.status_code == 400, (response.request.url, response.text)
        assert response.json()["error"] == "invalid_request"
    assert await stack.store.last_seq() == before
    # A backslash followed by "u0000" is ordinary text.
    written_out = await api.post(f"/v1/webchat/{key}/messages", json={"text": "C strings end in \\u0000"})
    assert written_out.status_code == 202, written_out.text
