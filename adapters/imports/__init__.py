"""Where imported history comes from (what it becomes is ``domain/imports.py``): the
self-hosted assistant's state folder (``openclaw_state``, ``openclaw_transcripts``) and this
product's own export (``export_archive``)."""
