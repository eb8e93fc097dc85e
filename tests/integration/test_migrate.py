"""``moltbot migrate`` as a new user runs it: log in with the CLI, point it at a self-hosted
state folder (tests/fixtures/openclaw-home), and find the history in the inbox with its
original times, the Telegram bot connected (the fake Bot API) and the agent's instructions
set; a second run stores nothing; a run cut by Ctrl-C and run again ends as one that was not."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.channels.endpoints import ProviderEndpoints
from tests.conftest import REPO_ROOT, Stack
from tests.fakes.telegram_api import FakeTelegram

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "openclaw-home"
PASSWORD = "correct horse battery"


@pytest.fixture
def endpoints(all_fakes_endpoints: ProviderEndpoints) -> ProviderEndpoints:
    return all_fakes_endpoints


def _environ(tmp_path: Path) -> dict[str, str]:
    return os.environ | {"XDG_CONFIG_HOME": str(tmp_path / "config"), "COLUMNS": "200"}


def _moltbot(*args: str, env: dict[str, str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "moltbot", *args],
        input=stdin, capture_output=True, text=True, env=env, cwd=cwd, timeout=180, check=False,
    )  # fmt: skip


async def _login(api: httpx.AsyncClient, email: str, env: dict[str, str], cwd: Path) -> dict[str, str]:
    """Sign up with the CLI (its session is what migrate uses), and for the test's own reads."""
    gateway = str(api.base_url).rstrip("/")
    signed = await asyncio.to_thread(
        _moltbot, "login", "--signup", "--email", email, "--password-stdin", "--gateway", gateway,
        env=env, cwd=cwd, stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    tokens = (await api.post("/v1/auth/login", json={"email": email, "password": PASSWORD})).json()
    return {"Authorization": f"Bearer {tokens['tokens']['access_token']}"}


async def _inbox(api: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    """Every conversation (title, channel, kind, unread) with its messages, oldest first."""
    found: dict[str, Any] = {}
    conversations = (await api.get("/v1/conversations", params={"limit": 100}, headers=headers)).json()
    for conversation in conversations["items"]:
        if conversation["preview"] or conversation["channel"] == "webchat":
            continue  # the inbox's own "Try it" chat
        messages: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = (
                await api.get(
                    f"/v1/conversations/{conversation['conversation_id']}/messages",
                    params={"limit": 200} | ({"cursor": cursor} if cursor else {}),
                    headers=headers,
                )
            ).json()
            messages += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        found[conversation["title"]] = {
            "channel": conversation["channel"],
            "kind": conversation["kind"],
            "unread": conversation["unread_count"],
            "messages": sorted(
                (m["sent_at"], m["direction"], m["text"], m.get("sender_name")) for m in messages
            ),
        }
    return found


async def test_migrate_brings_history_channels_and_the_agent_and_a_rerun_adds_nothing(
    api: httpx.AsyncClient, stack: Stack, tg: FakeTelegram, tmp_path: Path
) -> None:
    token = tg.add_bot("pico_home_bot", "Pico", bot_id=7000000321)
    assert token in (FIXTURE / "openclaw.json").read_text()  # the fixture's config holds that bot
    env, gateway = _environ(tmp_path), str(api.base_url).rstrip("/")
    headers = await _login(api, "marta@example.com", env, tmp_path)

    args = ("migrate", "--from", str(FIXTURE), "--yes", "--gateway", gateway, "--quiet")
    run = await asyncio.to_thread(_moltbot, *args, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "3 new conversations and 11 new messages (0 and 0 were there already)" in out, out
    assert "skipped: 1 internal sessions (sub-agents, cron jobs, hooks)" in out
    assert "skipped: 2 unreadable lines" in out  # a truncated last line, and a line that is no entry
    assert "skipped: 1 entries on other branches (edited or retried)" in out
    assert "skipped: 1 sessions without a transcript file" in out
    assert "Telegram (default): connected." in out
    assert "moltbot bridge pair CODE --gateway" in out and "Imessage, Signal, Whatsapp" in out
    assert "your plan keeps 30 days of history" in out  # the fixture's messages are from January

    await stack.wait_caught_up()
    inbox = await _inbox(api, headers)
    assert set(inbox) == {"Marta Reis", "Casa / Groceries", "Imported conversation"}
    marta = inbox["Marta Reis"]
    assert (marta["channel"], marta["kind"], marta["unread"]) == ("telegram", "direct", 0)
    assert marta["messages"][0][1:] == (
        "in", "Is the pharmacy on Rua Augusta open on Sunday?", "Marta Reis (@martareis)"
    )  # fmt: skip
    assert datetime.fromisoformat(marta["messages"][0][0]) == datetime(2026, 1, 20, 9, 6, 41, tzinfo=UTC)
    texts = [text for _, _, text, _ in marta["messages"]]
    assert "Rui moved to Rua da Prata 12, 3º esq. (from his message on the 14th)." in texts
    assert "I don't have it stored — can you send it once?" not in texts  # the answer that was retried
    assert inbox["Casa / Groceries"]["kind"] == "thread"
    assert inbox["Imported conversation"]["channel"] == "imported"

    conversations = (await api.get("/v1/conversations", headers=headers)).json()["items"]
    [imported] = [c for c in conversations if c["title"] == "Imported conversation"]
    reply = {"conversation_id": imported["conversation_id"], "text": "hello again"}
    refused = await api.post("/v1/messages", json=reply, headers=headers)
    assert (refused.status_code, refused.json()["error"]) == (409, "no_channel"), refused.text

    channels = (await api.get("/v1/channels", headers=headers)).json()
    assert [c["display_name"] for c in channels if c["channel"] == "telegram"] == ["@pico_home_bot"]
    [agent] = (await api.get("/v1/agents", headers=headers)).json()
    assert agent["name"] == "Pico"
    assert "Never share the household's addresses" in agent["system_prompt"]
    assert agent["model"] == "claude-haiku-4-5"  # the free plan's: the self-hosted sonnet is not offered
    ai = (await api.get("/v1/billing", headers=headers)).json()["ai"]
    assert ai["spent_this_month_micros"] == 0  # imported usage is token counts, never a cost
    need_reply = (await api.get("/v1/me", headers=headers)).json()["needs_reply"]
    assert need_reply == 0  # history is not news

    again = await asyncio.to_thread(_moltbot, *args, env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "0 new conversations and 0 new messages (3 and 11 were there already)" in again.stdout
    assert "a telegram channel is connected already" in again.stdout
    await stack.wait_caught_up()
    assert await _inbox(api, headers) == inbox


async def test_dry_run_sends_nothing_and_says_what_it_would_create(tmp_path: Path) -> None:
    run = await asyncio.to_thread(
        _moltbot, "migrate", "--from", str(FIXTURE), "--dry-run", env=_environ(tmp_path), cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert "3 conversations (2 on telegram, 1 on imported)" in run.stdout
    assert "11 messages with their original times" in run.stdout
    assert "channel telegram (default): would connect" in run.stdout
    assert "channel imessage (default): not connected: runs on your Mac" in run.stdout
    assert not (tmp_path / "config").exists()  # never logged in, nothing sent


def _huge_home(tmp_path: Path, messages: int) -> Path:
    """The fixture with one more Telegram chat of ``messages`` lines (format 1: no ids)."""
    home = tmp_path / "openclaw-home"
    shutil.copytree(FIXTURE, home)
    store = home / "agents" / "main" / "sessions" / "sessions.json"
    sessions = json.loads(store.read_text())
    session_id = "9d8c7b6a-5f4e-4d3c-8b2a-190817161514"
    sessions["agent:main:telegram:dm:77700001"] = {"sessionId": session_id, "displayName": "Busy chat"}
    store.write_text(json.dumps(sessions))
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with (store.parent / f"{session_id}.jsonl").open("w") as transcript:
        transcript.write(
            json.dumps({"type": "session", "id": session_id, "timestamp": start.isoformat()}) + "\n"
        )
        for n in range(messages):
            at = start + timedelta(minutes=n)
            body = {"role": "user" if n % 2 == 0 else "assistant", "timestamp": int(at.timestamp() * 1000)}
            body["content"] = [{"type": "text", "text": f"message {n} " + "lorem ipsum " * 20}]
            transcript.write(
                json.dumps({"type": "message", "timestamp": at.isoformat(), "message": body}) + "\n"
            )
    return home


async def _message_count(api: httpx.AsyncClient, headers: dict[str, str]) -> int:
    conversations = (await api.get("/v1/conversations", params={"limit": 100}, headers=headers)).json()
    return sum(c["message_count"] for c in conversations["items"] if c["channel"] != "webchat")


async def test_a_run_cut_short_and_run_again_ends_as_one_that_was_not(
    api: httpx.AsyncClient, stack: Stack, tmp_path: Path
) -> None:
    home = _huge_home(tmp_path, 6000)
    gateway = str(api.base_url).rstrip("/")
    whole_env, cut_env = _environ(tmp_path / "whole"), _environ(tmp_path / "cut")
    whole = await _login(api, "whole@example.com", whole_env, tmp_path)
    cut = await _login(api, "cut@example.com", cut_env, tmp_path)
    args = ("migrate", "--from", str(home), "--gateway", gateway, "--quiet")

    uncut = await asyncio.to_thread(_moltbot, *args, env=whole_env, cwd=tmp_path)
    assert uncut.returncode == 0, uncut.stderr
    assert "4 new conversations and 6011 new messages" in uncut.stdout

    process = subprocess.Popen(
        [sys.executable, "-m", "moltbot", *args], env=cut_env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    while await _message_count(api, cut) == 0 and process.poll() is None:
        await asyncio.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.to_thread(process.communicate, timeout=60)
    assert process.returncode == 130, err  # cut short
    await stack.wait_caught_up()
    assert 0 < await _message_count(api, cut) < 6011

    resumed = await asyncio.to_thread(_moltbot, *args, env=cut_env, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "were there already" in resumed.stdout
    await stack.wait_caught_up()
    assert await _inbox(api, cut) == await _inbox(api, whole)


async def test_the_import_api_says_what_to_fix(api: httpx.AsyncClient) -> None:
    signed = (
        await api.post("/v1/auth/signup", json={"email": "api@example.com", "password": PASSWORD})
    ).json()
    headers = {"Authorization": f"Bearer {signed['tokens']['access_token']}"}
    started = await api.post(
        "/v1/imports", json={"source": "openclaw", "source_key": "/home/a/.openclaw"}, headers=headers
    )
    assert started.status_code == 201, started.text
    again = await api.post(
        "/v1/imports", json={"source": "openclaw", "source_key": "/home/a/.openclaw"}, headers=headers
    )
    assert again.json()["import_id"] == started.json()["import_id"]  # a rerun continues the import
    batches = f"/v1/imports/{started.json()['import_id']}/batches"
    message = {"line": "s:1", "conversation": "agent:main:main", "direction": "in", "text": "hi",
               "sent_at": "2026-01-02T03:04:05Z"}  # fmt: skip

    orphan = await api.post(batches, json={"messages": [message]}, headers=headers)
    assert orphan.status_code == 400
    assert orphan.json()["field"] == "messages[0].conversation"
    assert "send it in `conversations` first" in orphan.json()["detail"]
    wrong = await api.post(batches, json={"messages": [message | {"direction": "sideways"}]}, headers=headers)
    assert wrong.status_code == 400, wrong.text
    assert wrong.json()["field"] == "messages[0].direction", wrong.json()
    naive = await api.post(batches, json={"messages": [message | {"sent_at": "2026-01-02T03:04:05"}]},
                           headers=headers)  # fmt: skip
    assert naive.status_code == 400 and naive.json()["field"] == "messages[0].sent_at", naive.text
    unknown = await api.post("/v1/imports/im_nope/batches", json={}, headers=headers)
    assert unknown.status_code == 404 and unknown.json()["field"] == "import_id"
    too_many = await api.post(batches, json={"messages": [message] * 1001}, headers=headers)
    assert too_many.status_code == 400

    conversation = {"key": "agent:main:main"}
    stored = await api.post(
        batches, json={"conversations": [conversation], "messages": [message]}, headers=headers
    )
    assert stored.status_code == 200, stored.text
    assert stored.json()["stored"] == {"conversations": 1, "messages": 1}
    # the next batch may name the conversation without sending it again
    later = message | {"line": "s:2", "text": "still there?"}
    follow = await api.post(f"{batches}?min_seq={stored.json()['seq']}", json={"messages": [later, message]},
                            headers=headers)  # fmt: skip
    assert follow.status_code == 200, follow.text
    assert (follow.json()["stored"], follow.json()["already"]) == (
        {"conversations": 0, "messages": 1}, {"conversations": 0, "messages": 1}
    )  # fmt: skip


async def test_an_export_brought_into_another_inbox_gives_the_same_history(
    api: httpx.AsyncClient, stack: Stack, tmp_path: Path
) -> None:
    gateway = str(api.base_url).rstrip("/")
    left_env, new_env = _environ(tmp_path / "left"), _environ(tmp_path / "new")
    left = await _login(api, "leaving@example.com", left_env, tmp_path)
    moving = ("migrate", "--from", str(FIXTURE), "--gateway", gateway, "--yes", "--quiet")
    moved = await asyncio.to_thread(_moltbot, *moving, env=left_env, cwd=tmp_path)
    assert moved.returncode == 0, moved.stderr
    await stack.wait_caught_up()

    archive = tmp_path / "inbox.zip"
    exported = await asyncio.to_thread(
        _moltbot, "export", "--out", str(archive), "--quiet", env=left_env, cwd=tmp_path
    )
    assert exported.returncode == 0, exported.stderr
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        manifest = json.loads(zipped.read("moltbot-export/manifest.json"))
        readme = zipped.read("moltbot-export/README.md").decode()
        messages = [json.loads(line) for line in zipped.read("moltbot-export/messages.jsonl").splitlines()]
    files = ("conversations.jsonl", "contacts.jsonl", "agents.json", "usage.jsonl", "media.jsonl")
    assert {f"moltbot-export/{name}" for name in files} <= names
    assert manifest["format"] == "moltbot-export" and manifest["counts"]["messages"] == len(messages) >= 11
    assert "moltbot migrate --from-export" in readme
    assert any(m["text"] == "Thanks! 🙏" and m["direction"] == "in" for m in messages)

    new = await _login(api, "coming-back@example.com", new_env, tmp_path)
    args = ("migrate", "--from-export", str(archive), "--gateway", gateway, "--yes", "--quiet")
    back = await asyncio.to_thread(_moltbot, *args, env=new_env, cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert "3 new conversations and 11 new messages" in back.stdout, back.stdout
    await stack.wait_caught_up()
    assert await _inbox(api, new) == await _inbox(api, left)
    [agent] = (await api.get("/v1/agents", headers=new)).json()
    assert agent["name"] == "Pico", (
        back.stdout + moved.stdout
    )  # the leaving inbox's agent, with its instructions
    assert "Never share the household's addresses" in agent["system_prompt"]

    again = await asyncio.to_thread(_moltbot, *args, env=new_env, cwd=tmp_path)
    assert "0 new conversations and 0 new messages (3 and 11 were there already)" in again.stdout


async def test_only_an_owner_exports_and_a_stranger_file_is_refused(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    env = _environ(tmp_path)
    await _login(api, "owner-export@example.com", env, tmp_path)
    not_zip = tmp_path / "notes.zip"
    not_zip.write_text("hello")
    refused = await asyncio.to_thread(
        _moltbot, "migrate", "--from-export", str(not_zip), env=env, cwd=tmp_path
    )
    assert refused.returncode == 1 and "is not a readable zip" in refused.stderr
    folder = await asyncio.to_thread(_moltbot, "export", "--out", str(tmp_path), env=env, cwd=tmp_path)
    assert folder.returncode == 1 and "is a folder" in folder.stderr
