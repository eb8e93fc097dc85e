"""A send command as signal-cli's ``send``, and what its answer means (pure).

A chat's ``external_id`` is where the message goes: ``group:<id>`` is a group (``groupId``),
anything else a person (``recipient``: their ACI or number). A reply quotes the message it
answers when the link still holds it (:class:`~adapters.channels.signal.normalize.Quotable`).

signal-cli answers ``{"timestamp", "results": [...]}``: the timestamp is Signal's id of the
sent message (``me:<timestamp>``). When no recipient got it, it answers an error whose
``data.response`` holds the same results, each with a ``type``; a ``token`` with a rate limit
is Signal asking for a captcha ("proof required").
"""

from __future__ import annotations

from typing import Any

import msgspec

from adapters.channels.signal import normalize as n
from adapters.channels.signal import states as s
from adapters.channels.signal.rpc import RpcError
from domain import tunnel as t
from domain.commands import SendMessage

RETRY = 30.0  # seconds before a send that failed for a passing reason is tried again
RATE_LIMIT_RETRY = 60.0

# JSON-RPC and signal-cli error codes
USER_ERROR = -1
IO_ERROR = -3
UNTRUSTED_IDENTITY = -4
RATE_LIMITED = -5
INVALID_PARAMS = -32602


class SendResult(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    type: str = "SUCCESS"  # SUCCESS, NETWORK_FAILURE, UNREGISTERED_FAILURE, IDENTITY_FAILURE, …
    token: str | None = None  # with RATE_LIMIT_FAILURE: a captcha is wanted ("proof required")
    retry_after_seconds: float | None = None


class Sent(msgspec.Struct, frozen=True, kw_only=True):
    timestamp: int
    results: tuple[SendResult, ...] = ()


class _FailedSend(msgspec.Struct, frozen=True):
    response: Sent | None = None


class Outcome(msgspec.Struct, frozen=True):
    """A send's result for the cloud, and the connection's new state if it says one."""

    result: t.Result
    happening: s.Happening | None = None


def send_params(command: SendMessage, account: str | None, quote: n.Quotable | None = None) -> dict[str, Any]:
    """The ``send`` request for ``command`` (``account``: the daemon's account, None for a
    daemon of one account)."""
    params: dict[str, Any] = {"message": command.text}
    if account is not None:
        params["account"] = account
    if command.to.startswith(n.GROUP_PREFIX):
        params["groupId"] = command.to.removeprefix(n.GROUP_PREFIX)
    else:
        params["recipient"] = [command.to]
    if quote is not None and quote.author:
        params |= {"quoteTimestamp": quote.timestamp, "quoteAuthor": quote.author, "quoteMessage": quote.text}
    return params


def delivered(command: SendMessage, answer: bytes) -> Outcome:
    sent = msgspec.json.decode(answer, type=Sent)
    result = t.Result(
        id=command.command_id, outcome="delivered", sent_at=n.moment(sent.timestamp),
        provider_message_id=n.provider_message_id(n.ME, sent.timestamp),
    )  # fmt: skip
    return Outcome(result)


def refused(command: SendMessage, error: RpcError, *, account: str | None, folder: str | None) -> Outcome:
    """What a refused send becomes: rejected for good (a person must change something) or
    deferred (tried again), with the state it puts the connection in."""
    results = _results(error)
    proof = next((r for r in results if r.token), None)
    if proof is not None and proof.token is not None:
        happening: s.Happening = s.CaptchaRequired(proof.token, account, folder)
        return _deferred(command, error, proof.retry_after_seconds or RATE_LIMIT_RETRY, happening)
    if error.code == RATE_LIMITED or any(r.type == "RATE_LIMIT_FAILURE" for r in results):
        wait = max((r.retry_after_seconds or 0 for r in results), default=0) or RATE_LIMIT_RETRY
        return _deferred(command, error, wait, s.RateLimited(wait))
    if error.code == INVALID_PARAMS and "account" in error.message.lower():
        return _rejected(
            command, "unregistered", "This computer is no longer a linked device of your Signal account.",
            s.Unregistered(),
        )  # fmt: skip
    if error.code == UNTRUSTED_IDENTITY or any(r.type == "IDENTITY_FAILURE" for r in results):
        return _rejected(
            command, "untrusted_identity",
            "Their safety number changed: check it in Signal on your phone (open the chat, then the"
            " contact's name → View safety number), then send again.",
        )  # fmt: skip
    if any(r.type == "UNREGISTERED_FAILURE" for r in results) or "not registered" in error.message:
        return _rejected(command, "not_on_signal", "This person is not on Signal (any more).")
    if error.code == USER_ERROR and not any(r.type == "NETWORK_FAILURE" for r in results):
        return _rejected(command, "signal_refused", f"Signal did not take the message: {error.message}")
    return _deferred(command, error, RETRY, None)


def _results(error: RpcError) -> tuple[SendResult, ...]:
    if not isinstance(error.data, dict):
        return ()
    try:
        failed = msgspec.convert(error.data, type=_FailedSend)
    except msgspec.ValidationError:
        return ()
    return failed.response.results if failed.response is not None else ()


def _deferred(command: SendMessage, error: RpcError, wait: float, happening: s.Happening | None) -> Outcome:
    result = t.Result(
        id=command.command_id, outcome="deferred", code="signal_busy", reason=error.message, retry_after=wait
    )
    return Outcome(result, happening)


def _rejected(command: SendMessage, code: str, reason: str, happening: s.Happening | None = None) -> Outcome:
    return Outcome(t.Result(id=command.command_id, outcome="rejected", code=code, reason=reason), happening)
