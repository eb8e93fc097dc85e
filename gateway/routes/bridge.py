"""``/v1/bridge/tunnel``: the WebSocket a paired device keeps open (gateway/bridge_tunnel.py)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from litestar import Router, WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from domain import tunnel as t
from gateway.bridge_tunnel import TunnelSession
from gateway.context import Ctx
from gateway.sockets import Closed

FAREWELL_TIMEOUT = 2.0


@websocket("/bridge/tunnel")
async def bridge_tunnel(socket: WebSocket[Any, Any, Any], ctx: Ctx) -> None:
    """One device's tunnel: challenge, signed hello, then events, commands and heartbeats."""
    await socket.accept()
    session = TunnelSession(socket, ctx)
    reason = "closed"
    try:
        await session.run()
    except Closed as closed:
        reason = {
            t.CLOSE_REVOKED: "revoked",
            t.CLOSE_REPLACED: "replaced",
            t.CLOSE_SILENT: "heartbeat_missed",
        }.get(closed.code, "refused")
        with contextlib.suppress(Exception):
            async with asyncio.timeout(FAREWELL_TIMEOUT):
                await socket.close(code=closed.code, reason=closed.reason[:120])
    except (WebSocketDisconnect, ConnectionError):
        reason = "closed"
    finally:
        await session.aclose(reason)


bridge_router = Router(path="/v1", route_handlers=[bridge_tunnel], tags=["bridge"])
