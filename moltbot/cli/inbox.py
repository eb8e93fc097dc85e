"""Your inbox through the gateway's API, like any client: ``login``, ``status``,
``channels``, ``conversations``, ``send`` and ``tail``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from moltbot import client
from moltbot.cli.common import add
from moltbot.settings import Settings


def _gateway_url(settings: Settings, args: argparse.Namespace) -> str:
    if getattr(args, "gateway", None):
        return str(args.gateway).rstrip("/")
    if os.environ.get("MOLTBOT_GATEWAY_URL"):
        return os.environ["MOLTBOT_GATEWAY_URL"].rstrip("/")
    if settings.stack_file.exists():
        url = json.loads(settings.stack_file.read_text()).get("gateway_url")
        if url:
            return str(url)
    return f"http://127.0.0.1:{settings.gateway_port}"


@asynccontextmanager
async def _api() -> AsyncIterator[client.Api]:
    path = client.session_path(os.environ)
    async with client.Api(client.load_session(path), path) as api:
        yield api


async def cmd_login(settings: Settings, args: argparse.Namespace) -> int:
    # Prompting happens before any network I/O, so blocking on the terminal is harmless here.
    email = args.email or await asyncio.to_thread(input, "E-mail: ")
    password = (
        sys.stdin.readline().rstrip("\n")
        if args.password_stdin
        else await asyncio.to_thread(getpass.getpass, "Password: ")
    )
    gateway = _gateway_url(settings, args)
    try:
        session = await client.login(gateway, email.strip(), password, signup=args.signup, otp=args.otp)
    except client.OtpRequired:
        if args.otp or not sys.stdin.isatty():
            raise client.ClientError(
                "This account has two-factor sign-in: pass --otp CODE (the app's code or a recovery code)."
            ) from None
        code = await asyncio.to_thread(input, "Authentication code (or a recovery code): ")
        session = await client.login(gateway, email.strip(), password, otp=code.strip())
    client.save_session(client.session_path(os.environ), session)
    print(f"Logged in to {session.gateway_url} as {email} (tenant {session.tenant_id}).")
    return 0


async def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    async with _api() as api:
        me = await api.get("/v1/me")
        channels = await api.get("/v1/channels")
        unread = await api.get("/v1/conversations", unread="true", limit=200)
    print(f"{me['email']} — {me['tenant_name']} ({me['plan']} plan, {me['role']})")
    print(f"gateway   {api.session.gateway_url}")
    print(f"channels  {len(channels)} ({sum(1 for c in channels if c['state'] == 'connected')} connected)")
    more = "+" if unread["next_cursor"] else ""
    print(f"unread    {len(unread['items'])}{more} conversations")
    return 0


_LIMIT_NAMES = {
    "cloud_channels": "channels", "bridge_channels": "device channels", "agents": "agents", "seats": "people",
}  # fmt: skip


def _dollars(micros: int) -> str:
    return f"${micros / 1e6:.2f}"


async def cmd_usage(settings: Settings, args: argparse.Namespace) -> int:
    async with _api() as api:
        billing = await api.get("/v1/billing")
        days = await api.get("/v1/usage", days=args.days)
    price = (
        f"${billing['monthly_price_cents'] / 100:.2f} a month"
        if billing["monthly_price_cents"]
        else "no charge"
    )
    print(f"plan      {billing['name']} ({price})" + ("" if billing["billing"] != "off" else ", billing off"))
    for use in billing["limits"]:
        allowed = "no limit" if use["allowed"] is None else use["allowed"]
        over = "  (over the plan: remove some to add others)" if use["over"] else ""
        print(f"  {_LIMIT_NAMES.get(use['limit'], use['limit']):<16} {use['used']} of {allowed}{over}")
    ai = billing["ai"]
    allowance = (
        "not counted (your own key)" if ai["allowance_micros"] is None else _dollars(ai["allowance_micros"])
    )
    print(f"AI        {_dollars(ai['spent_this_month_micros'])} this month of {allowance}")
    per_day: dict[str, dict[str, int]] = {}
    for row in days:
        per_day.setdefault(row["day"], {})[row["metric"]] = row["quantity"]
    top = max((d.get("messages_in", 0) + d.get("messages_out", 0) for d in per_day.values()), default=0) or 1
    for day in sorted(per_day):
        counts = per_day[day]
        messages = counts.get("messages_in", 0) + counts.get("messages_out", 0)
        bar = "█" * round(30 * messages / top)
        print(f"{day}  {messages:>6} messages {_dollars(counts.get('cost_micros', 0)):>8}  {bar}")
    if billing["upgrade"]:
        print(f"upgrade   {billing['upgrade']}: in the web app, Usage → Upgrade")
    return 0


async def cmd_channels_list(settings: Settings, args: argparse.Namespace) -> int:
    async with _api() as api:
        channels = await api.get("/v1/channels")
    if not channels:
        print(f"No channels yet. Connect one in the web app: {api.session.gateway_url} (Channels).")
    for channel in channels:
        message = f"  {channel['state_message']}" if channel["state_message"] else ""
        print(f"{channel['connection_id']:<30} {channel['channel']:<10} {channel['state']:<16}{message}")
    return 0


async def cmd_conversations_list(settings: Settings, args: argparse.Namespace) -> int:
    async with _api() as api:
        page = await api.get(
            "/v1/conversations",
            limit=args.limit,
            channel=args.channel,
            unread="true" if args.unread else None,
        )
        widget = None
        if not page["items"] and not (args.channel or args.unread):
            with contextlib.suppress(client.ClientError):
                widget = await api.get("/v1/webchat")
    if widget is not None:
        url = api.session.gateway_url.rstrip("/") + widget["widget_url"]
        print(f"No conversations yet. Try your website chat: {url}")
    elif not page["items"]:
        which = ("unread " if args.unread else "") + (f"{args.channel} " if args.channel else "")
        print(f"No {which}conversations." if which else "No conversations yet.")
    for item in page["items"]:
        unread = f"({item['unread_count']})" if item["unread_count"] else ""
        preview = (item["last_message_preview"] or "").replace("\n", " ")[:60]
        title = item["title"][:24]
        print(f"{item['conversation_id']:<30} {item['channel']:<9} {title:<24} {unread:>6}  {preview}")
    if page["next_cursor"]:
        print("... more: use --limit (up to 200)", file=sys.stderr)
    return 0


async def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    text = " ".join(args.text)
    key = args.idempotency_key or str(uuid.uuid4())
    async with _api() as api:
        accepted = await api.post(
            "/v1/messages",
            {"conversation_id": args.conversation, "text": text},
            headers={"Idempotency-Key": key},
        )
        print(f"Queued {accepted['message_id']} (seq {accepted['seq']}).")
        if args.no_wait:
            return 0
        status = await _delivery_status(api, args.conversation, accepted, wait=args.timeout)
    if status == "sent":
        print("Sent.")
        return 0
    if status == "failed":
        print("Not sent: the channel refused it (see the conversation in the inbox).", file=sys.stderr)
        return 1
    print(f"Still sending after {args.timeout:.0f}s; it stays queued.", file=sys.stderr)
    return 0


async def _delivery_status(
    api: client.Api, conversation: str, accepted: dict[str, Any], *, wait: float
) -> str:
    """Poll the conversation until the message is sent or failed, or ``wait`` seconds pass."""
    deadline = asyncio.get_running_loop().time() + wait
    status = "pending"
    while status == "pending" and asyncio.get_running_loop().time() < deadline:
        page = await api.get(f"/v1/conversations/{conversation}/messages", limit=20, min_seq=accepted["seq"])
        status = next(
            (m["status"] for m in page["items"] if m["message_id"] == accepted["message_id"]), status
        )
        if status == "pending":
            await asyncio.sleep(0.2)
    return status


async def cmd_tail(settings: Settings, args: argparse.Namespace) -> int:
    async with _api() as api:
        async for seq, event in api.events(args.since, args.types):
            if args.json:
                print(json.dumps({"seq": seq, **event}), flush=True)
            else:
                print(
                    f"{seq:>8}  {event['occurred_at']:<27} {event['type']:<26} {event['aggregate_id']}",
                    flush=True,
                )
    return 0


def register(commands: Any) -> None:
    gateway_help = "gateway URL (default: $MOLTBOT_GATEWAY_URL, the data folder's stack, or :8000)"
    login_cmd = add(
        commands, "login", cmd_login, "Log in to a gateway (or --signup) and remember the session."
    )
    login_cmd.add_argument("--email")
    login_cmd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login_cmd.add_argument("--signup", action="store_true", help="create the account first")
    login_cmd.add_argument(
        "--otp",
        metavar="CODE",
        help="with two-factor sign-in: the app's code or a recovery code (else asked)",
    )
    login_cmd.add_argument("--gateway", metavar="URL", help=gateway_help)
    add(commands, "status", cmd_status, "Who you are, your channels and unread conversations.")
    usage_cmd = add(
        commands, "usage", cmd_usage, "Your plan, its limits with what you use, AI spend and daily usage."
    )
    usage_cmd.add_argument("--days", type=int, default=31, help="days of daily usage to show (default 31)")
    channels = commands.add_parser("channels", help="your connected channels").add_subparsers(
        dest="channels_command", metavar="ACTION", required=True
    )
    add(channels, "list", cmd_channels_list, "List channels and their state.")
    conversations = commands.add_parser("conversations", help="your inbox").add_subparsers(
        dest="conversations_command", metavar="ACTION", required=True
    )
    conv_list = add(conversations, "list", cmd_conversations_list, "Most recently active conversations.")
    conv_list.add_argument("--limit", type=int, default=20)
    conv_list.add_argument("--channel", help="only this channel (telegram, slack, webchat, ...)")
    conv_list.add_argument("--unread", action="store_true", help="only conversations with unread messages")
    send_cmd = add(
        commands,
        "send",
        cmd_send,
        "Send a message into a conversation, through its channel; waits until the channel confirms.",
    )
    send_cmd.add_argument(
        "--conversation", required=True, metavar="ID", help="conversation id (see conversations list)"
    )
    send_cmd.add_argument("text", nargs="+", help="the message")
    send_cmd.add_argument("--idempotency-key", metavar="KEY", help="retrying with the same key sends once")
    send_cmd.add_argument("--no-wait", action="store_true", help="return once queued")
    send_cmd.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the channel (10)")
    tail_cmd = add(
        commands,
        "tail",
        cmd_tail,
        "Follow your events live; resumes after the last one shown if the line drops.",
    )
    tail_cmd.add_argument("--since", type=int, metavar="SEQ", help="start at this sequence (default: now)")
    tail_cmd.add_argument("--types", help="comma-separated event types, e.g. message.*")
    tail_cmd.add_argument("--json", action="store_true", help="print JSON lines")
