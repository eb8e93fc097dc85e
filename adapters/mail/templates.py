"""What each account mail says: one template per :data:`~domain.mail.MailKind` (subject,
plain text, HTML), filled with ``string.Template`` (``$name``).

Every value is escaped in the HTML body; the subject line is kept to one line whatever a
value holds (an inbox's name is chosen by people). Each mail tells its reader what to do if
it was not them.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from string import Template

import msgspec

from domain.mail import Mail, MailKind


class MailTemplate(msgspec.Struct, frozen=True):
    """One kind's wording: the values it needs, its subject line, its plain-text body and
    the inside of its HTML body (put in :data:`_PAGE`)."""

    needs: tuple[str, ...]
    subject: Template
    text: Template
    html: Template


_PAGE = Template("""\
<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>$title</title></head>
<body style="margin:0;padding:24px;background:#f6f7f9;color:#1f2328;\
font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;">
<div style="max-width:520px;margin:0 auto;padding:28px;background:#ffffff;border-radius:8px;line-height:1.5;">
$body
</div>
</body>
</html>
""")


def _button(label: str) -> str:
    """A link to ``$link`` drawn as a button, with the address spelled out below it."""
    return (
        '<p><a href="$link" style="display:inline-block;padding:10px 18px;background:#2563eb;'
        f'color:#ffffff;text-decoration:none;border-radius:6px;">{label}</a></p>\n'
        '<p style="font-size:13px;color:#57606a;">Or open this link: <a href="$link">$link</a></p>'
    )


TEMPLATES: dict[MailKind, MailTemplate] = {
    "password_reset": MailTemplate(
        needs=("link", "minutes", "product"),
        subject=Template("Reset your $product password"),
        text=Template("""\
Hello,

Someone (hopefully you) asked to reset the password of your $product account.
Choose a new password here:

$link

The link works once, for $minutes minutes.

Not you? Ignore this mail: your password stays as it is.

-- $product
"""),
        html=Template(f"""\
<p>Hello,</p>
<p>Someone (hopefully you) asked to reset the password of your $product account.</p>
{_button("Choose a new password")}
<p>The link works once, for $minutes minutes.</p>
<p>Not you? Ignore this mail: your password stays as it is.</p>
<p>&mdash; $product</p>"""),
    ),
    "verify_email": MailTemplate(
        needs=("link",),
        subject=Template("Confirm your e-mail address for Moltbot Cloud"),
        text=Template("""\
Hello,

Please confirm that this address is yours by opening this link:

$link

Not you? Ignore this mail: no Moltbot Cloud account will use this address.

-- Moltbot Cloud
"""),
        html=Template(f"""\
<p>Hello,</p>
<p>Please confirm that this address is yours.</p>
{_button("Confirm my address")}
<p>Not you? Ignore this mail: no Moltbot Cloud account will use this address.</p>
<p>&mdash; Moltbot Cloud</p>"""),
    ),
    "invitation": MailTemplate(
        needs=("link", "inviter", "inbox", "role", "days"),
        subject=Template("$inviter invited you to $inbox on Moltbot Cloud"),
        text=Template("""\
Hello,

$inviter invited you to the inbox "$inbox" on Moltbot Cloud, as $role.
Accept the invitation here:

$link

The invitation is valid for $days days.

Not expecting this? Ignore this mail: nothing happens unless you accept.

-- Moltbot Cloud
"""),
        html=Template(f"""\
<p>Hello,</p>
<p>$inviter invited you to the inbox <strong>$inbox</strong> on Moltbot Cloud, as $role.</p>
{_button("Accept the invitation")}
<p>The invitation is valid for $days days.</p>
<p>Not expecting this? Ignore this mail: nothing happens unless you accept.</p>
<p>&mdash; Moltbot Cloud</p>"""),
    ),
    "password_changed": MailTemplate(
        needs=("when",),
        subject=Template("Your Moltbot Cloud password was changed"),
        text=Template("""\
Hello,

The password of your Moltbot Cloud account was changed on $when.

If that was you, there is nothing to do.
Not you? Reset your password right away ("Forgot password" on the sign-in page)
and check your two-factor sign-in settings.

-- Moltbot Cloud
"""),
        html=Template("""\
<p>Hello,</p>
<p>The password of your Moltbot Cloud account was changed on $when.</p>
<p>If that was you, there is nothing to do.</p>
<p><strong>Not you?</strong> Reset your password right away (&ldquo;Forgot password&rdquo; on the
sign-in page) and check your two-factor sign-in settings.</p>
<p>&mdash; Moltbot Cloud</p>"""),
    ),
    "two_factor_changed": MailTemplate(
        needs=("state", "when"),
        subject=Template("Two-factor sign-in was $state for your Moltbot Cloud account"),
        text=Template("""\
Hello,

Two-factor sign-in was $state for your Moltbot Cloud account on $when.

If that was you, there is nothing to do.
Not you? Someone may know your password: reset it right away ("Forgot password"
on the sign-in page) and review two-factor sign-in in your account settings.

-- Moltbot Cloud
"""),
        html=Template("""\
<p>Hello,</p>
<p>Two-factor sign-in was <strong>$state</strong> for your Moltbot Cloud account on $when.</p>
<p>If that was you, there is nothing to do.</p>
<p><strong>Not you?</strong> Someone may know your password: reset it right away (&ldquo;Forgot
password&rdquo; on the sign-in page) and review two-factor sign-in in your account settings.</p>
<p>&mdash; Moltbot Cloud</p>"""),
    ),
    "digest": MailTemplate(
        needs=("link", "day", "headline", "items"),
        subject=Template("Your day at a glance, $day: $headline"),
        text=Template("""\
Good morning,

Your $day at a glance: $headline.

$items

Open your inbox:

$link

You get this mail each morning something needs you. Change its hour, or turn it off, in
your inbox's settings (Notifications).

Not expecting this? Ignore this mail, or turn the digest off in the settings of the Moltbot
Cloud account this address belongs to.

-- Moltbot Cloud
"""),
        html=Template(f"""\
<p>Good morning,</p>
<p>Your $day at a glance: <strong>$headline.</strong></p>
<p style="white-space:pre-line;">$items</p>
{_button("Open your inbox")}
<p style="font-size:13px;color:#57606a;">You get this mail each morning something needs you.
Change its hour, or turn it off, in your inbox's settings (Notifications).</p>
<p style="font-size:13px;color:#57606a;">Not expecting this? Ignore this mail, or turn the digest
off in the settings of the Moltbot Cloud account this address belongs to.</p>
<p>&mdash; Moltbot Cloud</p>"""),
    ),
}


def render(kind: MailKind, *, to: str, values: Mapping[str, str]) -> Mail:
    """The ``kind`` mail to ``to``, filled with ``values``; a value the kind needs and
    ``values`` lacks is a ``KeyError``, a ``link`` that is not http(s) a ``ValueError``."""
    template = TEMPLATES[kind]
    for name in template.needs:
        if name not in values:
            raise KeyError(f"the {kind} mail needs a value for {name!r}")
    link = values.get("link")
    if link is not None and not link.startswith(("https://", "http://")):
        raise ValueError(f"the {kind} mail's link must be an http(s) address, not {link!r}")
    # One line whatever the values hold: a line break in a header would end it.
    subject = " ".join(template.subject.substitute(values).split())
    escaped = {name: html.escape(str(value)) for name, value in values.items()}
    page = _PAGE.substitute(title=html.escape(subject), body=template.html.substitute(escaped))
    return Mail(kind=kind, to=to, subject=subject, text=template.text.substitute(values), html=page)
