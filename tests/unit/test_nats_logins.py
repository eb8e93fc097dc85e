"""How a process finds its NATS login (moltbot/settings.py), and the traverse-only ACL entry
the embedded PostgreSQL gets as root (adapters/embedded/access.py)."""

from __future__ import annotations

import json
from pathlib import Path

from adapters.embedded.access import with_traverse
from adapters.nats.connection import NatsLogin
from moltbot.settings import Settings


def _data(tmp_path: Path) -> Path:
    users = {"admin": "a-pw", "gateway": "g-pw", "connector-telegram": "t-pw"}
    (tmp_path / "nats").mkdir()
    (tmp_path / "nats" / "credentials.json").write_text(json.dumps({"users": users}))
    stack = {"nats_url": "nats://127.0.0.1:4222", "nats_user": "admin", "nats_password": "a-pw"}
    (tmp_path / "stack.json").write_text(json.dumps(stack | {"database_url": "postgresql://x"}))
    return tmp_path


def test_the_embedded_stack_signs_each_role_in_as_itself(tmp_path: Path) -> None:
    access, _ = Settings.load({}, data_dir=str(_data(tmp_path))).servers()
    assert access.url == "nats://127.0.0.1:4222"
    assert access.login("gateway") == NatsLogin(user="gateway", password="g-pw")
    assert access.login("connector-telegram") == NatsLogin(user="connector-telegram", password="t-pw")
    assert access.login("admin") == NatsLogin(user="admin", password="a-pw")
    assert access.login("outbox") is None  # not generated: the server will refuse it, loudly


def test_the_environment_login_wins_for_every_role(tmp_path: Path) -> None:
    environ = {"MOLTBOT_NATS_USER": "ops", "MOLTBOT_NATS_PASSWORD": "ops-pw"}
    access, _ = Settings.load(environ, data_dir=str(_data(tmp_path))).servers()
    assert access.login("gateway") == access.login("admin") == NatsLogin(user="ops", password="ops-pw")
    creds = Settings.load({"MOLTBOT_NATS_CREDS": "/etc/moltbot/gateway.creds"}, data_dir=str(tmp_path))
    assert creds.nats_login() == NatsLogin(creds_file=Path("/etc/moltbot/gateway.creds"))


def test_passwords_stay_out_of_reprs(tmp_path: Path) -> None:
    settings = Settings.load({"MOLTBOT_NATS_PASSWORD": "ops-pw"}, data_dir=str(tmp_path))
    assert "ops-pw" not in repr(settings)
    assert "g-pw" not in repr(NatsLogin(user="gateway", password="g-pw"))


def test_the_acl_entry_grants_traverse_to_one_user_only() -> None:
    user_obj, group_obj, other, user, mask = 0x01, 0x04, 0x20, 0x02, 0x10
    undefined = 0xFFFFFFFF
    closed = [(user_obj, 7, undefined), (group_obj, 0, undefined), (other, 0, undefined)]
    opened = with_traverse(closed, 998)
    assert opened == [
        (user_obj, 7, undefined),
        (user, 1, 998),  # execute (traverse), not read (list)
        (group_obj, 0, undefined),  # the group and others keep nothing
        (mask, 1, undefined),
        (other, 0, undefined),
    ]
    assert with_traverse(opened, 998) == opened  # granting again changes nothing
