"""The channel registry: every kind described once, read without loading a provider SDK."""

from __future__ import annotations

import subprocess
import sys

import pytest

from adapters.channels import registry
from adapters.channels.endpoints import ProviderEndpoints
from domain.agent import DEFAULT_MAX_TEXT_LENGTH


@pytest.mark.parametrize(
    ("channel", "longest"),
    [
        ("webchat", 4000),
        ("telegram", 4096),
        ("slack", 40000),
        ("discord", 2000),
        ("whatsapp_business", 4096),
        ("teams", 7000),
        ("signal", 2000),
        ("fax", DEFAULT_MAX_TEXT_LENGTH),
    ],
)
def test_replies_are_chunked_to_the_channels_own_limit(channel: str, longest: int) -> None:
    assert registry.max_text_for(channel) == longest


def test_every_kind_names_itself_and_runs_somewhere() -> None:
    for kind, entry in registry.KINDS.items():
        assert entry.kind == kind
        assert entry.runs_on and entry.runs_on <= {"cloud", "bridge"}
        assert (entry.connect is None) == (entry.connect_body is None)


def test_an_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(LookupError, match="telegram"):
        registry.entry("fax")


def test_reading_the_registry_loads_no_provider_sdk() -> None:
    probe = (
        "import sys, adapters.channels.registry as r, moltbot.roles, gateway.routes.channels;"
        "r.max_text_for('slack');"
        "print(sorted(m for m in ('aiogram', 'slack_sdk', 'hikari') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


async def test_a_kind_says_it_edits_only_when_its_connector_can() -> None:
    """The agent grows replies in place where ``capabilities.edits`` says so: the kind's
    connector must then have ``edit`` (and a kind without it must not claim edits)."""

    async def no_credentials(connection_id: str) -> dict[str, str]:
        return {}

    for kind, entry in registry.KINDS.items():
        if entry.connector is None:  # runs on the bridge: it does not claim edits
            assert not entry.capabilities.edits, kind
            continue
        connector = entry.connector(no_credentials, ProviderEndpoints())
        try:
            assert callable(getattr(connector, "edit", None)) == entry.capabilities.edits, kind
            assert 0 < entry.capabilities.edit_every <= entry.capabilities.group_edit_every, kind
        finally:
            closing = getattr(connector, "aclose", None)
            if closing is not None:
                await closing()
