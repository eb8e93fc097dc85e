"""Which sender ids carry a phone number or an e-mail address (pure), so only those suggest
that two identities are one person."""

from __future__ import annotations

import pytest

from domain import contacts


@pytest.mark.parametrize(
    ("sender_id", "phone", "email"),
    [
        ("wa:15551234567@s.whatsapp.net", "+15551234567", None),
        ("wa:15551234567:12@s.whatsapp.net", "+15551234567", None),  # one of their devices
        ("wa:15551234567", "+15551234567", None),  # WhatsApp Business: the wa_id
        ("wa:120363021234567890@g.us", None, None),  # a group, not a person
        ("wa:98765432109876@lid", None, None),  # a hidden id: no number
        ("imessage:+15551234567", "+15551234567", None),
        ("imessage:Ada@Example.com", None, "ada@example.com"),
        ("signal:+4915112345678", "+4915112345678", None),
        ("tg:5551234567", None, None),  # a Telegram user id is not a phone number
        ("slack:U0ADA", None, None),
        ("webchat:v_1", None, None),
    ],
)
def test_a_sender_id_tells_its_phone_or_e_mail_only_where_the_channel_puts_one(
    sender_id: str, phone: str | None, email: str | None
) -> None:
    assert (contacts.phone_of(sender_id), contacts.email_of(sender_id)) == (phone, email)


def test_an_identity_is_named_by_its_connection_and_sender_and_starts_as_its_own_contact() -> None:
    ada = contacts.identity_id("cn_1", "tg:42")
    assert ada == contacts.identity_id("cn_1", "tg:42") != contacts.identity_id("cn_2", "tg:42")
    assert contacts.first_contact_id(ada).startswith("ct_") and ada.startswith("id_")
