"""``DELETE /v1/tenant``: the owner erases the inbox (``gateway/erasure.py``); the password,
and a code with two-factor sign-in on, prove it is the person, not a stolen token.
``DELETE /v1/me`` is beside ``GET /v1/me`` (``gateway/routes/accounts.py``)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, delete
from litestar.di import Provide
from litestar.params import JSONBody

from gateway.context import Ctx, Who, caller
from gateway.erasure import Erased, erase_tenant
from gateway.errors import ApiError
from gateway.routes.accounts import ConfirmBody, confirm_identity


@delete("/tenant", status_code=200)
async def delete_tenant(
    data: JSONBody[ConfirmBody], ctx: Ctx, who: Who, request: Request[Any, Any, Any]
) -> Erased:
    """Erase the caller's inbox and everything of it (the owner; the password, and a code
    with two-factor sign-in on)."""
    if who.role != "owner":
        raise ApiError(403, "forbidden", "Only an owner of the inbox can delete it.")
    await confirm_identity(ctx, request, who, data)
    return await erase_tenant(ctx, who.tenant_id, f"user:{who.user_id}", "deleted_by_owner")


erasure_router = Router(
    path="/v1", route_handlers=[delete_tenant], tags=["accounts"], dependencies={"who": Provide(caller)}
)
