"""What happens to a Signal connection, as the states people see on the channels page (pure).

The link (``link.py``) turns what signal-cli answers into these happenings; this module says
what each one means: the state, a machine code, a sentence a person understands and what
they can do. While a QR code is shown the state stays ``connecting`` (the link is alive and
waits for the phone), as WhatsApp's does; ``action_required`` ends the link until the person
acts (and connects Signal again, or restarts the bridge).
"""

from __future__ import annotations

from dataclasses import dataclass

from domain import events as ev

INSTALL_HINT = (
    "Install signal-cli on this computer (on a Mac: brew install signal-cli; elsewhere see"
    " github.com/AsamK/signal-cli; version 0.13 needs Java 21 or newer), then restart the bridge"
)
AGAIN = "Remove this Signal channel and connect Signal again to link it anew"


@dataclass(frozen=True)
class LinkShown:
    """A QR code to link this computer is on the channels page (the code travels on LIVE only)."""


@dataclass(frozen=True)
class LinkExpired:
    """Nobody scanned the codes of the last attempts: the link stopped asking."""


@dataclass(frozen=True)
class Connected:
    number: str | None  # the account's number (None: a daemon's own account, not yet named)


@dataclass(frozen=True)
class Unregistered:
    """Signal no longer takes this linked device (removed on the phone, or unused too long),
    or the daemon does not have the account it should use."""

    account: str | None = None  # the daemon's missing account, when it was configured


@dataclass(frozen=True)
class RateLimited:
    seconds: float | None  # how long Signal says to wait, when it says


@dataclass(frozen=True)
class CaptchaRequired:
    """Signal wants a solved captcha before the account sends more (a "proof required")."""

    challenge: str  # the token to submit with the solved captcha
    account: str | None
    folder: str | None  # the data folder of a signal-cli the bridge runs itself


@dataclass(frozen=True)
class CliMissing:
    configured: str | None  # MOLTBOT_SIGNAL_CLI, when it names something that is not there


@dataclass(frozen=True)
class CliFailed:
    detail: str  # the last line signal-cli wrote before it stopped


@dataclass(frozen=True)
class Unreachable:
    detail: str


Happening = (
    LinkShown
    | LinkExpired
    | Connected
    | Unregistered
    | RateLimited
    | CaptchaRequired
    | CliMissing
    | CliFailed
    | Unreachable
)


def _minutes(seconds: float | None) -> str:
    minutes = max(1, round((seconds or 60) / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def state_for(happening: Happening) -> ev.ConnectionStateChangedData:
    """The connection state a person sees for ``happening``."""
    data = ev.ConnectionStateChangedData
    match happening:
        case LinkShown():
            return data(
                state="connecting", code="link_required", action="scan_qr",
                message="Scan the QR code with Signal on your phone: Settings → Linked devices →"
                " Link new device.",
            )  # fmt: skip
        case LinkExpired():
            return data(
                state="action_required", code="link_expired", action="link_again",
                message=f"The QR code was not scanned in time. {AGAIN}.",
            )  # fmt: skip
        case Connected(number=number):
            who = number or "the signal-cli daemon's account"
            return data(state="connected", code="ok", message=f"Connected as {who}.")
        case Unregistered(account=None):
            return data(
                state="action_required", code="unregistered", action="link_again",
                message="Signal no longer accepts this computer as a linked device (it was removed in"
                f" Signal on your phone, or unused for too long). {AGAIN}.",
            )  # fmt: skip
        case Unregistered(account=account):
            return data(
                state="action_required", code="unregistered", action="fix_settings",
                message=f"The signal-cli daemon has no account {account} (MOLTBOT_SIGNAL_ACCOUNT): register"
                " or link it there, or unset MOLTBOT_SIGNAL_ACCOUNT to link this computer instead.",
            )  # fmt: skip
        case RateLimited(seconds=seconds):
            return data(
                state="degraded", code="rate_limited", action="wait",
                message="Signal is limiting how many messages this account sends: replies wait and are"
                f" tried again in about {_minutes(seconds)}.",
            )  # fmt: skip
        case CaptchaRequired(challenge=challenge, account=account, folder=folder):
            where = f"--config {folder} " if folder else ""
            stop = " with the bridge stopped" if folder else ""
            return data(
                state="action_required", code="captcha_required", action="solve_captcha",
                message="Signal wants a captcha solved before this account sends more; replies wait."
                " Open https://signalcaptchas.org/challenge/generate.html, solve it, copy the link"
                f' of "Open Signal", and run{stop}: signal-cli {where}-a {account or "YOUR_NUMBER"}'
                f" submitRateLimitChallenge --challenge {challenge} --captcha THE_LINK",
            )  # fmt: skip
        case CliMissing(configured=None):
            return data(
                state="action_required", code="signal_cli_missing", action="install_signal_cli",
                message=f"signal-cli is not installed here. {INSTALL_HINT}; or set MOLTBOT_SIGNAL_CLI to"
                " where it is, or MOLTBOT_SIGNAL_RPC to a signal-cli daemon already running.",
            )  # fmt: skip
        case CliMissing(configured=configured):
            return data(
                state="action_required", code="signal_cli_missing", action="install_signal_cli",
                message=f"MOLTBOT_SIGNAL_CLI names {configured}, which is not a program here."
                f" {INSTALL_HINT} (or point MOLTBOT_SIGNAL_CLI at it).",
            )  # fmt: skip
        case CliFailed(detail=detail):
            return data(
                state="action_required", code="signal_cli_failed", action="fix_signal_cli",
                message=f"signal-cli stopped as it started ({detail}). It needs Java 21 or newer"
                " (0.14: Java 25); its log is signal-cli.log in the bridge's signal folder. Fix it, then"
                " restart the bridge.",
            )  # fmt: skip
        case Unreachable(detail=detail):
            return data(
                state="degraded", code="signal_unreachable",
                message=f"Signal cannot be reached from this computer ({detail}); the bridge keeps trying.",
            )  # fmt: skip
    raise AssertionError(f"no state for {happening!r}")
