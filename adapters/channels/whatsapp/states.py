"""What happens to a WhatsApp session, as the connection states people see (pure).

The link (``link.py``) turns its client's events into these happenings; this module says
what each one means for the channels page: the state, a machine code, a sentence a person
understands and what they can do. WhatsApp's QR codes rotate on a fixed schedule with no
event when the last one expires, so the pairing window is computed here too.

While a code is shown the state stays ``connecting`` (the session is alive and waits for
the phone); ``action_required`` ends the session until the person connects again.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain import events as ev

# The QR codes of one pairing attempt: the first is valid 60 s, each of the next five 20 s;
# then WhatsApp disconnects without telling us (the session stops and starts a new attempt).
QR_LIFETIMES = (60.0, 20.0, 20.0, 20.0, 20.0, 20.0)
PAIRING_WINDOW = sum(QR_LIFETIMES)


@dataclass(frozen=True)
class QrShown:
    """A QR code is on the channels page (the code itself travels on LIVE only)."""


@dataclass(frozen=True)
class PairCodeShown:
    """An 8-character code to type on the phone is on the channels page (LIVE only)."""


@dataclass(frozen=True)
class QrExpired:
    """Nobody scanned the codes of the last pairing attempts: the session stopped asking."""


@dataclass(frozen=True)
class Connected:
    name: str  # the account's push name
    number: str  # its phone number, digits


@dataclass(frozen=True)
class LoggedOut:
    """The phone removed this linked device (or WhatsApp ended the session)."""


@dataclass(frozen=True)
class TemporarilyBanned:
    seconds: int  # how long WhatsApp says to wait


@dataclass(frozen=True)
class ClientOutdated:
    """WhatsApp refuses this version of the library: the operator must update."""


@dataclass(frozen=True)
class Unreachable:
    detail: str  # why the dial failed, as the library says it


@dataclass(frozen=True)
class Replaced:
    """The same session was opened somewhere else."""


Happening = (
    QrShown
    | PairCodeShown
    | QrExpired
    | Connected
    | LoggedOut
    | TemporarilyBanned
    | ClientOutdated
    | Unreachable
    | Replaced
)


def _minutes(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def state_for(happening: Happening) -> ev.ConnectionStateChangedData:
    """The connection state a person sees for ``happening``."""
    data = ev.ConnectionStateChangedData
    match happening:
        case QrShown():
            return data(
                state="connecting", code="qr_required", action="scan_qr",
                message="Scan the QR code with WhatsApp on your phone:"
                " Settings → Linked devices → Link a device.",
            )  # fmt: skip
        case PairCodeShown():
            return data(
                state="connecting", code="pair_code_required", action="enter_code",
                message="On your phone, open WhatsApp → Settings → Linked devices → Link a device →"
                " Link with phone number instead, and type the code shown here.",
            )  # fmt: skip
        case QrExpired():
            return data(
                state="action_required", code="qr_expired", action="scan_again",
                message="The code was not used in time: connect WhatsApp again to get a new one.",
            )  # fmt: skip
        case Connected(name=name, number=number):
            who = f"{name} (+{number})" if name else f"+{number}"
            return data(state="connected", code="ok", message=f"Connected as {who}.")
        case LoggedOut():
            return data(
                state="action_required", code="logged_out", action="scan_again",
                message="This inbox was removed from your phone's linked devices: scan the QR code again.",
            )  # fmt: skip
        case TemporarilyBanned(seconds=seconds):
            return data(
                state="degraded", code="temporarily_banned", action="wait",
                message=f"WhatsApp has paused this account for about {_minutes(seconds)};"
                " it connects again after that.",
            )  # fmt: skip
        case ClientOutdated():
            return data(
                state="action_required", code="outdated_client", action="contact_operator",
                message="WhatsApp no longer accepts this server's WhatsApp library:"
                " the operator must update Moltbot.",
            )  # fmt: skip
        case Unreachable(detail=detail):
            return data(
                state="degraded", code="network_unreachable",
                message=f"WhatsApp cannot be reached from here ({detail}); Moltbot keeps trying.",
            )  # fmt: skip
        case Replaced():
            return data(
                state="action_required", code="session_replaced", action="reconnect",
                message="This WhatsApp session was opened somewhere else; connect it here again to use it.",
            )  # fmt: skip
    raise AssertionError(f"no state for {happening!r}")


def qr_expires_after(index: int) -> float:
    """Seconds the ``index``-th QR code of an attempt (from 0) stays valid."""
    return QR_LIFETIMES[min(index, len(QR_LIFETIMES) - 1)]
