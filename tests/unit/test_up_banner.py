"""What `moltbot up` prints once it serves: the inbox, the data folder, the model, next steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from moltbot.settings import Settings
from moltbot.stack import banner


def test_without_a_key_the_offline_model_answers(tmp_path: Path) -> None:
    text = banner(Settings.load({}, data_dir=str(tmp_path)), "http://127.0.0.1:8123")
    assert "inbox  http://127.0.0.1:8123" in text
    assert f"data   {tmp_path.resolve()}" in text
    assert "agent  offline-1" in text and "MOLTBOT_ANTHROPIC_API_KEY" in text
    assert f"moltbot --data {tmp_path.resolve()} login --signup" in text  # not the default folder


def test_with_a_key_new_agents_answer_with_claude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.load({"MOLTBOT_ANTHROPIC_API_KEY": "sk-test"})
    text = banner(settings, "http://127.0.0.1:8000")
    assert "agent  claude-sonnet-4-6 (Anthropic)" in text
    assert "sk-test" not in text
    assert "moltbot login --signup" in text  # the default folder needs no --data
