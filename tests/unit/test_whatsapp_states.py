"""A WhatsApp session's happenings as the states, reasons and actions people see."""

from __future__ import annotations

import pytest

from adapters.channels.whatsapp import states as s


@pytest.mark.parametrize(
    ("happening", "state", "code", "action", "words"),
    [
        (s.QrShown(), "connecting", "qr_required", "scan_qr", "Linked devices"),
        (s.PairCodeShown(), "connecting", "pair_code_required", "enter_code", "Link with phone number"),
        (s.QrExpired(), "action_required", "qr_expired", "scan_again", "not used in time"),
        (s.Connected("Ada", "15551230000"), "connected", "ok", None, "Connected as Ada (+15551230000)."),
        (s.Connected("", "15551230000"), "connected", "ok", None, "Connected as +15551230000."),
        (s.LoggedOut(), "action_required", "logged_out", "scan_again", "scan the QR code again"),
        (s.TemporarilyBanned(3600), "degraded", "temporarily_banned", "wait", "about 60 minutes"),
        (s.TemporarilyBanned(30), "degraded", "temporarily_banned", "wait", "about 1 minute;"),
        (
            s.ClientOutdated(),
            "action_required",
            "outdated_client",
            "contact_operator",
            "operator must update",
        ),
        (s.Unreachable("no such host"), "degraded", "network_unreachable", None, "host); Moltbot keeps"),
        (s.Replaced(), "action_required", "session_replaced", "reconnect", "somewhere else"),
    ],
)
def test_each_happening_says_what_it_means_and_what_to_do(
    happening: s.Happening, state: str, code: str, action: str | None, words: str
) -> None:
    shown = s.state_for(happening)
    assert (shown.state, shown.code, shown.action) == (state, code, action)
    assert words in shown.message


def test_the_qr_codes_of_one_attempt_last_160_seconds_in_all() -> None:
    assert [s.qr_expires_after(i) for i in range(7)] == [60, 20, 20, 20, 20, 20, 20]
    assert s.PAIRING_WINDOW == 160
