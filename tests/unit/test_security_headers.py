"""Browser-facing headers: no framing of the inbox, no sniffing, no referrer, HSTS over TLS."""

from __future__ import annotations

import pytest
from litestar import Litestar, Response, get
from litestar.params import FromPath
from litestar.testing import TestClient

from gateway.limits import Limits, client_ip
from gateway.routes.web import page_headers
from gateway.security_headers import security_headers


@get("/")
async def inbox_page() -> Response[str]:
    return Response("<html></html>", media_type="text/html", headers=page_headers())


@get("/webchat/{key:str}")
async def widget_page(key: FromPath[str]) -> Response[str]:
    return Response("<html></html>", media_type="text/html", headers=page_headers(frameable=True))


@get("/v1/thing")
async def api_thing() -> dict[str, str]:
    return {"ok": "yes"}


def _app(https: bool) -> Litestar:
    return Litestar([inbox_page, widget_page, api_thing], before_send=[security_headers(https=https)])


def test_the_inbox_cannot_be_framed_and_the_widget_can() -> None:
    with TestClient(_app(https=False)) as client:
        inbox = client.get("/")
        widget = client.get("/webchat/wk_123")
    assert inbox.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in inbox.headers["content-security-policy"]
    assert "x-frame-options" not in widget.headers
    assert "frame-ancestors" not in widget.headers["content-security-policy"]


@pytest.mark.parametrize("path", ["/", "/webchat/wk_1", "/v1/thing", "/missing"])
def test_every_answer_is_nosniff_and_sends_no_referrer(path: str) -> None:
    with TestClient(_app(https=False)) as client:
        response = client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "strict-transport-security" not in response.headers


def test_hsts_when_served_over_tls() -> None:
    with TestClient(_app(https=True)) as client:
        response = client.get("/v1/thing")
    assert response.headers["strict-transport-security"].startswith("max-age=")


class _Peer:
    def __init__(self, host: str, forwarded: str = "") -> None:
        self.client = type("Client", (), {"host": host})()
        self.headers = {"x-forwarded-for": forwarded} if forwarded else {}


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("198.51.100.1", "", (), "198.51.100.1"),
        ("198.51.100.1", "203.0.113.9", (), "198.51.100.1"),  # an untrusted peer's header is ignored
        ("10.0.0.2", "203.0.113.9", ("10.0.0.0/8",), "203.0.113.9"),
        ("10.0.0.2", "1.2.3.4, 203.0.113.9, 10.0.0.3", ("10.0.0.0/8",), "203.0.113.9"),  # rightmost untrusted
        ("10.0.0.2", "", ("10.0.0.0/8",), "10.0.0.2"),
    ],
)
def test_client_address_behind_trusted_proxies(
    peer: str, forwarded: str, trusted: tuple[str, ...], expected: str
) -> None:
    assert client_ip(_Peer(peer, forwarded), trusted) == expected


def test_limits_from_the_environment() -> None:
    limits = Limits.from_environ({"MOLTBOT_LIMIT_LOGIN_PER_IP": "3", "MOLTBOT_LIMIT_API_PER_TENANT": "0"})
    assert (limits.login_per_ip, limits.api_per_tenant) == (3, 0)
    assert limits.signup_per_ip == Limits().signup_per_ip
    with pytest.raises(ValueError, match="MOLTBOT_LIMIT_SIGNUP_PER_IP"):
        Limits.from_environ({"MOLTBOT_LIMIT_SIGNUP_PER_IP": "many"})
