"""NATS signs every client in and confines each role to its subjects (adapters/nats/permissions.py).

The servers here are started by each test, not by the ``nats_server`` fixture: these tests
provoke permission violations on purpose, which that fixture counts as a failure.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client

from adapters.embedded.nats_server import NatsServer, find_nats_server_binary
from adapters.nats import permissions
from adapters.nats.connection import NatsAccess, NatsLogin, NatsSignInRefused, connect
from adapters.nats.event_store import EventStore
from adapters.nats.streams import StreamsFile, apply_streams
from domain.examples import examples
from moltbot.roles import CONNECTOR_KINDS
from tests.conftest import REPO_ROOT, nats_access, nats_users, permission_violations


@pytest.fixture
async def guarded(tmp_path: Path, streams_spec: StreamsFile) -> AsyncIterator[NatsServer]:
    """A nats-server with the product's users and streams."""
    async with NatsServer(tmp_path / "nats", users=nats_users()) as server:
        admin = await connect(nats_access(server), name="tests-admin")
        await apply_streams(admin, streams_spec)
        await admin.close()
        yield server


async def _as(access: NatsAccess, role: str, errors: list[str]) -> Client:
    """A client signed in as ``role`` whose asynchronous errors land in ``errors``."""

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    url = access.url
    login = access.login(role)
    assert login is not None
    return await nats.connect(
        url,
        user=login.user,
        password=login.password,
        inbox_prefix=permissions.inbox_prefix(role),
        error_cb=on_error,
        allow_reconnect=False,
    )


async def test_a_client_without_the_right_password_is_refused(guarded: NatsServer) -> None:
    for login in (
        {},
        {"user": "gateway", "password": "not-its-password"},
        {"user": "nobody", "password": "x"},
    ):
        with pytest.raises((nats.errors.Error, OSError)):
            await nats.connect(guarded.url, allow_reconnect=False, connect_timeout=2, **login)


async def test_a_refused_sign_in_is_an_error_not_an_endless_retry(guarded: NatsServer) -> None:
    wrong = NatsAccess(guarded.url, default=NatsLogin(user="gateway", password="not-its-password"))
    async with asyncio.timeout(10):
        with pytest.raises(NatsSignInRefused, match="gateway"):
            await connect(wrong, role=permissions.GATEWAY)


async def test_a_connector_cannot_publish_outside_its_subjects(guarded: NatsServer) -> None:
    access = nats_access(guarded)
    errors: list[str] = []
    webchat = await _as(access, permissions.connector_role("webchat"), errors)
    try:
        # Another channel's commands, another role's replies, the stream's admin API.
        await webchat.publish("cmd.telegram.c_1.send_message", b"{}")
        with pytest.raises(nats.errors.TimeoutError):
            await webchat.jetstream(timeout=1).delete_stream("EVENTS")
        with pytest.raises(nats.errors.TimeoutError):
            await webchat.jetstream(timeout=1).purge_stream("COMMANDS")
        await webchat.subscribe("_INBOX.gateway.>")
        await webchat.subscribe("ev.>")  # reading the log raw, past any consumer
        await webchat.flush(timeout=2)
        await asyncio.sleep(0.2)
    finally:
        await webchat.close()
    refused = "\n".join(errors)  # nats-py reports the server's message in lower case
    assert 'publish to "cmd.telegram.c_1.send_message"' in refused
    assert 'publish to "$js.api.stream.delete.events"' in refused
    assert 'publish to "$js.api.stream.purge.commands"' in refused
    assert 'subscription to "_inbox.gateway.>"' in refused
    assert 'subscription to "ev.>"' in refused
    admin = await connect(access, name="tests-admin")
    try:
        js = admin.jetstream()
        assert (await js.stream_info("COMMANDS")).state.messages == 0
        assert (await js.stream_info("EVENTS")).config.name == "EVENTS"
    finally:
        await admin.close()
    assert permission_violations(guarded)


async def test_the_gateway_cannot_delete_purge_or_change_the_event_log(guarded: NatsServer) -> None:
    access = nats_access(guarded)
    errors: list[str] = []
    gateway = await _as(access, permissions.GATEWAY, errors)
    try:
        js = gateway.jetstream(timeout=1)
        store = EventStore(gateway)
        appended = await store.append(examples()[0])  # what it must do still works
        assert appended.seq == 1
        for refused in (
            js.delete_stream("EVENTS"),
            js.purge_stream("EVENTS"),
            js.delete_msg("EVENTS", 1),
            gateway.request("$JS.API.STREAM.UPDATE.EVENTS", b"{}", timeout=1),
            gateway.request("$JS.API.STREAM.CREATE.MINE", b'{"subjects":["mine.>"]}', timeout=1),
        ):
            with pytest.raises(nats.errors.TimeoutError):
                await refused
        await gateway.publish("cmd.webchat.c_1.send_message", b"{}")  # commands are the outbox's
        await gateway.flush(timeout=2)
        await asyncio.sleep(0.2)
    finally:
        await gateway.close()
    assert len([e for e in errors if "permissions violation" in e]) == 6
    admin = await connect(access, name="tests-admin")
    try:
        assert (await admin.jetstream().stream_info("EVENTS")).state.messages == 1
        assert (await admin.jetstream().stream_info("COMMANDS")).state.messages == 0
    finally:
        await admin.close()


def test_every_role_is_confined_and_the_config_loads(tmp_path: Path) -> None:
    roles = permissions.roles(CONNECTOR_KINDS)
    for role in roles:
        perms = permissions.role_permissions(role)
        if role == permissions.ADMIN:
            assert perms is None
            continue
        assert perms is not None
        assert ">" not in perms.publish and ">" not in perms.subscribe
        assert "$JS.API.STREAM.DELETE.>" in perms.publish_deny
        assert "$JS.API.STREAM.PURGE.>" in perms.publish_deny
        assert "$JS.API.STREAM.UPDATE.>" in perms.publish_deny
        assert f"_INBOX.{role}.>" in perms.subscribe
        assert "_INBOX.>" not in perms.subscribe
    config = tmp_path / "auth.conf"
    config.write_text(
        "listen: 127.0.0.1:-1\n" + permissions.render_authorization({role: f"pw-{role}" for role in roles})
    )
    checked = subprocess.run(
        [str(find_nats_server_binary()), "-t", "-c", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _certificates(folder: Path) -> None:
    """A CA and the server and route certificates infra/nats/*.conf name (tests only)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "moltbot test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name in ("server", "route"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nats-1")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("nats-1")]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / f"{name}-key.pem").write_bytes(pem(key))


@pytest.mark.parametrize("name", ["single-node.conf", "cluster-3.conf"])
def test_the_infra_configs_load_with_generated_users(tmp_path: Path, name: str) -> None:
    """infra/nats/*.conf as shipped (paths moved under tmp_path) pass `nats-server -t` with the
    users.conf that `moltbot nats users` writes."""
    from moltbot.cli import main

    assert main(["nats", "users", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "users.conf").stat().st_mode & 0o777 == 0o600
    _certificates(tmp_path / "tls")
    shipped = (REPO_ROOT / "infra" / "nats" / name).read_text()
    assert "include ./users.conf" in shipped
    assert "0.0.0.0" not in shipped
    config = tmp_path / name
    config.write_text(
        shipped.replace("/etc/moltbot/nats/tls", str(tmp_path / "tls"))
        .replace("/var/lib/moltbot/nats", str(tmp_path / "store"))
        .replace("10.0.0.11", "127.0.0.1")
    )
    checked = subprocess.run(
        [str(find_nats_server_binary()), "-t", "-c", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
