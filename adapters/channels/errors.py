"""The errors every channel kind raises, once for all of them; ``str()`` is written for a
person. The gateway maps each class to an HTTP answer in one table (gateway/errors.py)."""

from __future__ import annotations

from collections.abc import Mapping


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The seconds a provider's ``Retry-After`` header asks for (None: none, or a date)."""
    try:
        return float(headers["retry-after"])
    except (KeyError, ValueError):
        return None


class ChannelError(Exception):
    """Base of the channels' own errors. ``field`` names the request field at fault;
    ``code`` overrides the class's machine code where one flow needs its own."""

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.code = code


class TokenRejected(ChannelError):
    """The provider does not accept the credential (malformed, revoked, never issued)."""


class TokenRevoked(TokenRejected):
    """A connection's stored credential no longer works: a person must reconnect it."""


class ProviderUnreachable(ChannelError):
    """The provider could not be asked (network error, outage); try again later."""


class InstallRejected(ChannelError):
    """The provider refused an OAuth install (a used or expired code, a wrong secret)."""


class BadSignature(ChannelError):
    """A webhook request is not signed (or not fresh, or lacks the secret): store nothing."""


class SubscriptionRefused(ChannelError):
    """A provider's check of a webhook address (Meta's ``hub.challenge``) with another verify token."""


class BadRequest(ChannelError):
    """A webhook or connect request whose body the provider's format does not allow."""


class WrongWorkspace(ChannelError):
    """A correctly signed delivery for another workspace (or app) than the connection's."""


class NotConnected(ChannelError):
    """No connection of this kind here (or it does not take this kind of delivery)."""


class NotConfigured(ChannelError):
    """The deployment lacks what this flow needs (the vault, an app's OAuth settings)."""


class InstallStateInvalid(ChannelError):
    """An install link that is incomplete, expired or already used."""


class WrongBrowser(ChannelError):
    """An install completed in another browser than the one that started it."""


class AlreadyConnected(ChannelError):
    """The account is connected already; one connection receives it."""
