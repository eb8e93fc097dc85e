"""Signal: the user's own Signal account, linked as a secondary device through signal-cli's
JSON-RPC daemon on the user's own machine, reached through the Personal Bridge.

Everything here runs on the device, inside the bridge program: ``config`` (where signal-cli
is: an executable the bridge starts, or a daemon already running), ``rpc`` and
``rpc_http`` (signal-cli's JSON-RPC, over a line stream or over HTTP), ``daemon`` (opening
one of them), ``envelopes`` (what signal-cli's ``receive`` notifications hold), ``normalize``
(envelopes → canonical events, pure), ``outbound`` (a send command → signal-cli's ``send``,
and its answer → the command's result, pure), ``states`` (what a person sees on the channels
page, pure), ``link`` (one connection's life: link by QR code, receive, send) and ``device``
(the bridge's channel). This module stays light: the registry reads what the kind is.

Ids are derived from Signal's: a message is named by its author and its timestamp (Signal's
own message id), ``<author>:<timestamp>`` where the author is the sender's ACI (their
number when signal-cli knows no ACI) and ``me`` for the linked account's own messages; a
chat is the other person's ACI (or number), or ``group:<group id>``.
"""

from __future__ import annotations

from domain.connectors import Capabilities

KIND = "signal"
# The tunnel carries text sends only: no edits, deletes, reactions or "typing…" from Moltbot
# (signal-cli has methods for them; the bridge does not receive such commands yet). Files
# people send come in (media). 2000 is what Signal shows inline; longer replies go in parts.
CAPABILITIES = Capabilities(max_text_length=2000, media=True)
