"""Account mail through an SMTP server (aiosmtplib), configured by one URL,
``MOLTBOT_SMTP_URL``:

- ``smtp://[user:password@]host[:port]``: port 587 by default; STARTTLS when the server
  offers it (``?starttls=required``: refuse to send without it; ``?starttls=off``: never,
  for a relay on the same host);
- ``smtps://[user:password@]host[:port]``: TLS from the first byte, port 465 by default;
- ``?timeout=SECONDS`` for each connection and command (default 10).

User and password are percent-decoded (``%40`` for ``@``). A failure the server may get
over (it cannot be reached, it times out, it answers 4xx) is tried again a few times; a
5xx answer, a refused login or a certificate that does not verify is final.
The password is never logged nor shown in an error.
"""

from __future__ import annotations

import ssl
from email.utils import parseaddr
from urllib.parse import parse_qsl, unquote, urlsplit

import aiosmtplib
import msgspec
import stamina
import structlog

from adapters.mail.message import build_message
from domain.mail import Mail, MailNotSent

log = structlog.get_logger()

ENV = "MOLTBOT_SMTP_URL"
DEFAULT_PORTS = {"smtp": 587, "smtps": 465}
STARTTLS_MODES: dict[str, bool | None] = {"auto": None, "required": True, "off": False}
DEFAULT_TIMEOUT = 10.0
ATTEMPTS = 4  # the first try and three more, 1 s, 2 s and 4 s apart (with jitter)
# What a send can fail with (ValueError: an address or header aiosmtplib refuses).
FAILURES = (aiosmtplib.SMTPException, OSError, ValueError)


class SmtpTarget(msgspec.Struct, frozen=True, kw_only=True):
    """Where and how mail leaves: the server's host and port, TLS from the first byte
    (``smtps://``) or ``starttls`` (None: when offered, True: required, False: never), the
    login if any, and the seconds each connection and command may take."""

    host: str
    port: int
    implicit_tls: bool
    starttls: bool | None = None
    username: str | None = None
    password: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __repr__(self) -> str:  # never the password
        login = f"{self.username}:***@" if self.username is not None else ""
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"SmtpTarget({scheme}://{login}{self.host}:{self.port}, timeout={self.timeout})"


def parse_smtp_url(url: str) -> SmtpTarget:
    """``url`` (the value of MOLTBOT_SMTP_URL) as a target; a ``ValueError`` saying what to
    fix otherwise. Errors never repeat the URL, which may hold a password."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{ENV} is not a valid URL ({exc}); write smtp://user:password@host:587") from None
    if parts.scheme not in DEFAULT_PORTS:
        shown = f"{parts.scheme}://" if parts.scheme else "no scheme"
        raise ValueError(
            f"{ENV} must start with smtp:// (STARTTLS, port 587) or smtps:// (TLS, port 465), not {shown}"
        )
    if not parts.hostname:
        raise ValueError(f"{ENV} names no host; write {parts.scheme}://user:password@host")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError(f"{ENV} takes no path; write {parts.scheme}://user:password@host:port?timeout=10")
    if (parts.username is None) != (parts.password is None):
        raise ValueError(f"{ENV} has a user but no password; write {parts.scheme}://user:password@host")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - {"starttls", "timeout"})
    if unknown:
        raise ValueError(f"{ENV} has unknown options {', '.join(unknown)}; it takes starttls= and timeout=")
    starttls_mode = options.get("starttls", "auto")
    if starttls_mode not in STARTTLS_MODES:
        raise ValueError(f"{ENV}'s starttls= must be auto, required or off, not {starttls_mode!r}")
    if parts.scheme == "smtps" and "starttls" in options:
        raise ValueError(f"{ENV}: starttls= is for smtp:// only (smtps:// is TLS from the start)")
    try:
        timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
    except ValueError:
        timeout = 0.0
    if not timeout > 0:
        raise ValueError(f"{ENV}'s timeout= must be a number of seconds above 0, e.g. timeout=10")
    return SmtpTarget(
        host=parts.hostname,
        port=port or DEFAULT_PORTS[parts.scheme],
        implicit_tls=parts.scheme == "smtps",
        starttls=False if parts.scheme == "smtps" else STARTTLS_MODES[starttls_mode],
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
        timeout=timeout,
    )


def is_transient(exc: Exception) -> bool:
    """Whether trying again later may deliver: no connection, a timeout, a 4xx answer."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return 400 <= exc.code < 500
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(400 <= refused.code < 500 for refused in exc.recipients)
    if isinstance(exc, ssl.SSLError) or isinstance(exc.__cause__, ssl.SSLError):
        return False  # a certificate that does not verify will not verify next time
    return isinstance(exc, OSError)  # refused, reset, timed out, name not resolved


def describe(exc: Exception, target: SmtpTarget) -> str:
    """What went wrong, for an operator (never the password)."""
    server = f"{target.host}:{target.port}"
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return f"{server} refused the login of {target.username!r}: {exc.code} {exc.message}"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"{server} answered {exc.code} {exc.message}"
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        answers = "; ".join(f"{refused.code} {refused.message}" for refused in exc.recipients)
        return f"{server} refused the recipient: {answers}"
    if isinstance(exc, OSError):
        return f"cannot reach {server}: {exc}"
    return f"{server}: {exc}"


class SmtpMailer:
    """A :class:`~domain.mail.Mailer` that sends from ``sender`` through the server of
    ``url`` (see the module's docstring); the URL is checked here, at start."""

    def __init__(self, url: str, sender: str, *, attempts: int = ATTEMPTS) -> None:
        self._target = parse_smtp_url(url)
        self._sender = sender
        self._envelope_sender = parseaddr(sender)[1] or sender  # the address in "Name <address>"
        self._attempts = attempts

    @property
    def target(self) -> SmtpTarget:
        return self._target

    async def send(self, mail: Mail) -> None:
        target = self._target
        bound = log.bind(kind=mail.kind, host=target.host, port=target.port)
        try:
            message = build_message(mail, self._sender)
        except ValueError as exc:
            raise MailNotSent(f"the {mail.kind} mail cannot be written: {exc}", retryable=False) from exc
        try:
            async for attempt in stamina.retry_context(
                on=is_transient,
                attempts=self._attempts,
                timeout=None,  # bounded by the attempts and each one's timeout
                wait_initial=1.0,
                wait_max=10.0,
                wait_jitter=1.0,
            ):
                with attempt:
                    try:
                        await aiosmtplib.send(
                            message,
                            sender=self._envelope_sender,
                            recipients=[parseaddr(mail.to)[1] or mail.to],
                            hostname=target.host,
                            port=target.port,
                            username=target.username,
                            password=target.password,
                            use_tls=target.implicit_tls,
                            start_tls=target.starttls,
                            timeout=target.timeout,
                        )
                    except FAILURES as exc:
                        bound.warning(
                            "mail_attempt_failed",
                            attempt=attempt.num,
                            error=describe(exc, target),
                            retryable=is_transient(exc),
                        )
                        raise
        except FAILURES as exc:
            retryable = is_transient(exc)
            gave_up = f" (gave up after {self._attempts} attempts)" if retryable else ""
            raise MailNotSent(
                f"the {mail.kind} mail was not sent: {describe(exc, target)}{gave_up}", retryable=retryable
            ) from exc
        bound.info("mail_sent")
