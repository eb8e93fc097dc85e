"""The Personal Bridge: the program on the user's own device (``moltbot bridge``).

``identity`` (the device's key and who it is paired with), ``local_store`` (its durable
outbox, cursors and executed commands, in SQLite), ``tunnel`` (the one WebSocket to the
cloud), ``channels`` (the channel kinds it can host here) and ``device`` (all of it together).
"""
