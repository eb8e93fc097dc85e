"""The product's own mail (password resets, address checks, invitations, security notices):
``templates`` renders a kind into a :class:`domain.mail.Mail`, ``message`` makes it an
RFC 5322 message, ``smtp`` sends it to a mail server, ``outbox`` keeps it in a folder
instead (read with ``moltbot mail``), ``factory`` picks one of the two."""
