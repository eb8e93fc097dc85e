"""A fake of the Microsoft side of a Teams bot, served on 127.0.0.1: Azure AD's token
endpoint, the Bot Framework's OpenID metadata and signing keys, and the Bot Connector.

The product's real httpx and PyJWT code talks to it over HTTP, so tests exercise request
building, token checks and error mapping, not a mock of them. Endpoints:

- ``POST /{tenant}/oauth2/v2.0/token`` (``botframework.com`` for multi-tenant apps, the
  app's own tenant for single-tenant ones): the client-credentials flow, scope
  ``https://api.botframework.com/.default``; refusals as Azure AD words them (``error``,
  ``error_description`` with its AADSTS number, ``error_codes``): an unknown app 400
  ``unauthorized_client`` (700016), a wrong or revoked secret 401 ``invalid_client``
  (7000215 / 7000222), an unknown tenant 400 ``invalid_request`` (90002).
- ``GET /v1/.well-known/openidconfiguration`` → ``jwks_uri`` → ``GET /v1/.well-known/keys``:
  the fake's own RSA keys with their ``endorsements`` (``main``: msteams and webchat;
  ``webchat``: webchat only). A third key, ``unpublished``, signs tokens but is never listed.
- ``POST {serviceUrl}v3/conversations/{conversationId}/activities`` with ``serviceUrl`` =
  ``<base>/amer/``: only with a token this fake issued and that has not expired; records
  the Activity (``sent``) and answers its id.

Test controls: :meth:`FakeTeams.add_app` (→ :class:`App`: what its owner pastes),
:meth:`~FakeTeams.revoke`, :meth:`~FakeTeams.fail_next_send`; inbound tokens as the Bot
Connector signs them, :meth:`~FakeTeams.mint` (any audience, serviceUrl, key, lifetime);
builders of Activities (:meth:`~FakeTeams.message`, :meth:`~FakeTeams.edit`,
:meth:`~FakeTeams.delete`, :meth:`~FakeTeams.reaction`, :meth:`~FakeTeams.installed`); and
what was done: ``token_requests``, ``key_fetches``, ``sent``, ``requests``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.fakes.serving import read_body, serving

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Json = dict[str, Any]

ISSUER = "https://api.botframework.com"
SCOPE = "https://api.botframework.com/.default"
MULTI_TENANT = "botframework.com"
REGION = "amer"
TENANT = "72f988bf-0000-4000-8000-000000000001"  # the Microsoft 365 tenant the people write from
TOKEN_LIFETIME = 3599
ENDORSEMENTS = {"main": ["msteams", "webchat"], "webchat": ["webchat"], "unpublished": ["msteams"]}
_TOKEN_PATH = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token$")
_MEMBER = re.compile(rf"^/{REGION}/v3/conversations/(?P<conversation>[^/]+)/members/(?P<member>[^/]+)$")
_ACTIVITIES = re.compile(rf"^/{REGION}/v3/conversations/(?P<conversation>[^/]+)/activities$")


@functools.cache
def _private_key(name: str) -> rsa.RSAPrivateKey:
    """The fake's signing keys, made once per test run (RSA key generation is slow)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _kid(name: str) -> str:
    return f"fake-{name}-key"


@dataclass(frozen=True)
class App:
    """A bot registered on the fake, and what its owner pastes into Moltbot."""

    app_id: str
    client_secret: str
    tenant_id: str | None = None  # set: a single-tenant app, whose tokens come from its tenant

    @property
    def bot_id(self) -> str:
        return f"28:{self.app_id}"


@dataclass
class _Failure:
    status: int
    code: str
    message: str
    retry_after: int | None


class FakeTeams:
    """Azure AD, the Bot Framework's keys and the Bot Connector for any number of bots."""

    def __init__(self) -> None:
        self.base_url = ""  # http://127.0.0.1:<port>
        self.apps: dict[str, App] = {}
        self.revoked: set[str] = set()  # app ids whose secret no longer works
        self.issued: dict[str, tuple[str, float]] = {}  # access token -> (app id, expires at)
        self.token_requests: list[str] = []  # the app id of each token request, in order
        self.key_fetches = 0
        self.sent: list[Json] = []  # each Activity posted, with "conversation_id", "authorization", "id"
        self.requests: list[tuple[str, str]] = []  # (method, path), in order
        self.emails: dict[str, str] = {}  # a user's "29:…" id -> the e-mail on their account
        self._failures: list[_Failure] = []
        self._ids = itertools.count(1)

    @property
    def login_base(self) -> str:
        return self.base_url

    @property
    def openid_url(self) -> str:
        return f"{self.base_url}/v1/.well-known/openidconfiguration"

    @property
    def service_url(self) -> str:
        return f"{self.base_url}/{REGION}/"

    # --- apps and failures ------------------------------------------------------------

    def add_app(self, *, tenant_id: str | None = None) -> App:
        app = App(str(uuid.uuid4()), secrets.token_urlsafe(30), tenant_id)
        self.apps[app.app_id] = app
        return app

    def revoke(self, app: App) -> None:
        """The app's client secret expired or was deleted: token requests fail from now on."""
        self.revoked.add(app.app_id)

    def fail_next_send(self, status: int, code: str, message: str, *, retry_after: int | None = None) -> None:
        self._failures.append(_Failure(status, code, message, retry_after))

    # --- what the Bot Connector posts to a bot --------------------------------------

    def mint(
        self,
        app: App | str,
        *,
        service_url: str | None = None,
        key: str = "main",
        issuer: str = ISSUER,
        expires_in: float = 3600,
        valid_in: float = -5,  # seconds from now until the token is valid (nbf)
        algorithm: str = "RS256",
        named_key: bool = True,
    ) -> str:
        """A token as the Bot Connector signs it for ``app`` (its audience: an app, or any
        app id), vouching for ``service_url`` (default: this fake's), signed with the fake's
        ``key`` ("main", "webchat" or "unpublished")."""
        now = time.time()
        claims = {
            "serviceurl": service_url or self.service_url,
            "nbf": int(now + valid_in),
            "exp": int(now + expires_in),
            "iss": issuer,
            "aud": app.app_id if isinstance(app, App) else app,
        }
        named = {"kid": _kid(key)} if named_key else None  # False: a header without "kid"
        return jwt.encode(claims, _private_key(key), algorithm=algorithm, headers=named)

    def _activity(self, app: App, kind: str, conversation: Json, **fields: Any) -> Json:
        return {
            "type": kind,
            "id": fields.pop("id", None) or str(int(time.time() * 1000) + next(self._ids)),
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "serviceUrl": fields.pop("service_url", None) or self.service_url,
            "channelId": fields.pop("channel_id", "msteams"),
            "from": fields.pop("sender", None) or {"id": "29:1ada-lovelace", "name": "Ada Lovelace",
                                                   "aadObjectId": "6b5a3c1e-0000-4000-8000-00000000ada0"},
            "conversation": conversation,
            "recipient": {"id": app.bot_id, "name": "Moltbot"},
            "channelData": {"tenant": {"id": TENANT}, **fields.pop("channel_data", {})},
            **fields,
        }  # fmt: skip

    @staticmethod
    def personal(conversation_id: str = "a:1personal-chat-with-ada") -> Json:
        return {"conversationType": "personal", "id": conversation_id,
                "tenantId": TENANT}  # fmt: skip

    @staticmethod
    def channel_thread(root_id: str = "1700000000000") -> Json:
        return {"conversationType": "channel", "isGroup": True,
                "id": f"19:general-channel@thread.tacv2;messageid={root_id}",
                "tenantId": TENANT}  # fmt: skip

    def message(
        self, app: App, text: str, *, conversation: Json | None = None, mention: bool = False, **fields: Any
    ) -> Json:
        """A person's message to the bot (``mention``: it @mentions the bot, as in a channel)."""
        entities: list[Json] = []
        if mention:
            at = "<at>Moltbot</at>"
            text = f"{at} {text}"
            entities.append(
                {"type": "mention", "mentioned": {"id": app.bot_id, "name": "Moltbot"}, "text": at}
            )
        entities.append({"type": "clientInfo", "locale": "en-US", "country": "US", "platform": "Web"})
        return self._activity(
            app, "message", conversation or self.personal(), text=text, textFormat="plain", entities=entities,
            **fields,
        )  # fmt: skip

    def edit(self, app: App, original: Json, text: str) -> Json:
        return self._activity(
            app, "messageUpdate", original["conversation"], id=original["id"], text=text,
            textFormat="plain", channel_data={"eventType": "editMessage"},
        )  # fmt: skip

    def delete(self, app: App, original: Json) -> Json:
        return self._activity(
            app, "messageDelete", original["conversation"], id=original["id"],
            channel_data={"eventType": "softDeleteMessage"},
        )  # fmt: skip

    def reaction(self, app: App, original: Json, reaction: str = "like", *, removed: bool = False) -> Json:
        changes = {"reactionsRemoved" if removed else "reactionsAdded": [{"type": reaction}]}
        return self._activity(
            app, "messageReaction", original["conversation"], replyToId=original["id"], **changes
        )

    def installed(self, app: App, conversation: Json | None = None) -> Json:
        """The bot added to a chat (the app installed in a person's personal scope)."""
        return self._activity(
            app, "conversationUpdate", conversation or self.personal(),
            membersAdded=[{"id": app.bot_id}], channel_data={"eventType": "teamMemberAdded"},
        )  # fmt: skip

    # --- ASGI -----------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        method, path = scope["method"], scope["path"]
        self.requests.append((method, path))
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if method == "GET" and path == "/v1/.well-known/openidconfiguration":
            await _reply(send, 200, self._metadata())
            return
        if method == "GET" and path == "/v1/.well-known/keys":
            self.key_fetches += 1
            await _reply(send, 200, {"keys": list(published_keys().values())})
            return
        token_path = _TOKEN_PATH.match(path)
        if method == "POST" and token_path:
            status, answer = self._token(token_path["tenant"], dict(parse_qsl(body.decode())))
            await _reply(send, status, answer)
            return
        member = _MEMBER.match(scope.get("raw_path", path.encode()).decode())
        if method == "GET" and member:
            status, answer = self._member(unquote(member["member"]), headers.get("authorization", ""))
            await _reply(send, status, answer)
            return
        activities = _ACTIVITIES.match(scope.get("raw_path", path.encode()).decode())
        if method == "POST" and activities:
            status, answer, extra = self._post_activity(
                unquote(activities["conversation"]), headers.get("authorization", ""), body
            )
            await _reply(send, status, answer, extra)
            return
        await _reply(send, 404, {"error": {"code": "NotFound", "message": f"no {method} {path} here"}})

    def _metadata(self) -> Json:
        return {
            "issuer": ISSUER,
            "authorization_endpoint": "https://invalid.botframework.com",
            "jwks_uri": f"{self.base_url}/v1/.well-known/keys",
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        }

    def _token(self, tenant: str, form: dict[str, str]) -> tuple[int, Json]:
        app = self.apps.get(form.get("client_id", ""))
        if form.get("grant_type") != "client_credentials" or form.get("scope") != SCOPE:
            detail = f"The request body must contain client_credentials and the scope {SCOPE}."
            return _aad_error(400, "invalid_request", 900144, detail)
        known_tenants = {MULTI_TENANT} | {a.tenant_id for a in self.apps.values() if a.tenant_id}
        if tenant not in known_tenants:
            return _aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if app is None or (app.tenant_id or MULTI_TENANT) != tenant:
            directory = "Bot Framework" if tenant == MULTI_TENANT else tenant
            return _aad_error(
                400, "unauthorized_client", 700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the directory"
                f" '{directory}'.",
            )  # fmt: skip
        if app.app_id in self.revoked:
            detail = f"The provided client secret keys for app '{app.app_id}' are expired."
            return _aad_error(401, "invalid_client", 7000222, detail)
        if not secrets.compare_digest(form.get("client_secret", ""), app.client_secret):
            return _aad_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        self.token_requests.append(app.app_id)
        access_token = "eyJ0eXAiOiJKV1Qi." + secrets.token_urlsafe(40)
        self.issued[access_token] = (app.app_id, time.time() + TOKEN_LIFETIME)
        answer = {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME, "ext_expires_in": TOKEN_LIFETIME,
                  "access_token": access_token}  # fmt: skip
        return 200, answer

    def _member(self, member: str, authorization: str) -> tuple[int, Json]:
        issued = self.issued.get(authorization.removeprefix("Bearer ").strip())
        if issued is None or issued[1] < time.time():
            return 401, {"message": "Authorization has been denied for this request."}
        if not member.startswith("29:"):
            return 404, {"error": {"code": "MemberNotFoundInConversation", "message": "Member not found"}}
        email = self.emails.get(member)
        object_id = str(uuid.uuid5(uuid.NAMESPACE_URL, member))
        answer: Json = {"id": member, "name": "Ada Lovelace", "aadObjectId": object_id, "tenantId": TENANT,
                        "userRole": "user"}  # fmt: skip
        if email is not None:
            answer |= {"email": email, "userPrincipalName": email}
        return 200, answer

    def _post_activity(
        self, conversation_id: str, authorization: str, body: bytes
    ) -> tuple[int, Json, list[tuple[bytes, bytes]]]:
        token = authorization.removeprefix("Bearer ").strip()
        issued = self.issued.get(token)
        if issued is None or issued[1] < time.time():
            return 401, {"message": "Authorization has been denied for this request."}, []
        try:
            activity = json.loads(body)
        except ValueError:
            return 400, {"error": {"code": "BadArgument", "message": "The body is not JSON."}}, []
        if not isinstance(activity, dict) or activity.get("type") != "message" or not activity.get("text"):
            return 400, {"error": {"code": "BadArgument", "message": "Unknown activity type or no text."}}, []
        if self._failures:
            failure = self._failures.pop(0)
            extra = (
                [(b"retry-after", str(failure.retry_after).encode())]
                if failure.retry_after is not None
                else []
            )
            return failure.status, {"error": {"code": failure.code, "message": failure.message}}, extra
        activity_id = f"1:{secrets.token_hex(12)}"
        self.sent.append({**activity, "conversation_id": conversation_id, "authorization": authorization,
                          "id": activity_id, "app_id": issued[0]})  # fmt: skip
        return 201, {"id": activity_id}, []


def published_keys() -> dict[str, Json]:
    """The keys the fake's ``jwks_uri`` lists, by kid (``unpublished`` is not among them)."""
    return {_kid(name): _jwk(name) for name in ("main", "webchat")}


def _jwk(name: str) -> Json:
    public = RSAAlgorithm.to_jwk(_private_key(name).public_key(), as_dict=True)
    return {**public, "kid": _kid(name), "use": "sig", "endorsements": ENDORSEMENTS[name]}


def _aad_error(status: int, error: str, code: int, description: str) -> tuple[int, Json]:
    trace, stamp = str(uuid.uuid4()), datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return status, {
        "error": error,
        "error_description": f"AADSTS{code}: {description}\r\nTrace ID: {trace}\r\nTimestamp: {stamp}",
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }


def headers(token: str) -> dict[str, str]:
    """The headers the Bot Connector posts an Activity with."""
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json; charset=utf-8"}


async def _reply(
    send: Send, status: int, answer: Json, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", b"application/json; charset=utf-8"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(answer).encode()})


@contextlib.asynccontextmanager
async def fake_teams() -> AsyncIterator[FakeTeams]:
    """Serve a :class:`FakeTeams` on a free port of 127.0.0.1 for the block's duration."""
    fake = FakeTeams()
    async with serving(fake, "Microsoft Teams") as port:
        fake.base_url = f"http://127.0.0.1:{port}"
        yield fake
