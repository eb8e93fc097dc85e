"""The deployment's push settings: its VAPID key and subject, and the push services a
subscription may point at (``MOLTBOT_VAPID_*``, ``MOLTBOT_PUSH_SERVICES``)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from adapters.push.vapid import VapidKey

# The browsers' push services (Chrome and Edge on Android: FCM; Firefox: Mozilla's autopush;
# Edge on Windows: WNS; Safari: Apple). A subscription's endpoint must be on one of these
# hosts or their subdomains: the notifier posts to it, so any other address is refused.
PUSH_SERVICES = (
    "fcm.googleapis.com",
    "android.googleapis.com",
    "push.services.mozilla.com",
    "notify.windows.com",
    "push.apple.com",
)
MAX_ENDPOINT = 2048


@dataclass(frozen=True)
class PushConfig:
    key: VapidKey
    subject: str  # mailto: or https: URL a push service may contact about our traffic
    services: tuple[str, ...] = PUSH_SERVICES  # MOLTBOT_PUSH_SERVICES: hosts endpoints may be on

    def __post_init__(self) -> None:
        if not valid_subject(self.subject):
            raise ValueError(
                f"MOLTBOT_VAPID_SUBJECT must be a mailto: address or an https:// URL, not {self.subject!r}"
            )

    def endpoint_refusal(self, endpoint: str) -> str | None:
        """Why a subscription's endpoint is not one to post to (None: it is): https on a
        browser push service's host (plain http only on a loopback address listed here)."""
        if len(endpoint) > MAX_ENDPOINT:
            return f"endpoint is longer than {MAX_ENDPOINT} characters."
        try:
            parts = urlsplit(endpoint)
            host = (parts.hostname or "").lower()
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            return "endpoint is not a URL."
        if parts.username is not None or parts.password is not None or not host:
            return "endpoint is not a push service URL."
        if not any(host == service or host.endswith(f".{service}") for service in self.services):
            return f"endpoint is not on a browser push service ({', '.join(self.services)})."
        if parts.scheme == "https" or (parts.scheme == "http" and _loopback(host)):
            return None
        return "endpoint must be an https URL."


def valid_subject(subject: str) -> bool:
    """A contact push services accept in the VAPID ``sub`` claim: ``mailto:`` an address, or an
    https URL."""
    if subject.startswith("mailto:"):
        return re.fullmatch(r"mailto:[^@\s]+@[^@\s]+", subject) is not None
    return subject.startswith("https://") and bool(urlsplit(subject).hostname)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
