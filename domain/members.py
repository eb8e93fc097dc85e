"""Who may change whom in an inbox: the rules behind invitations, role changes and removals.

Owners may do anything to anyone; admins manage members and admins but never owners, and
cannot make owners; members may only leave. An inbox always keeps an owner: its last owner
can neither leave, be removed nor be demoted. Each decision is a refusal (code and a
sentence a person understands) or ``None`` for "allowed".
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from domain.events import Role


class Refusal(msgspec.Struct, frozen=True):
    status: int  # the HTTP status the gateway answers with
    code: str
    detail: str


_ONLY_MANAGERS = Refusal(403, "forbidden", "Only the inbox's owners and admins can manage its people.")
_OWNERS_ONLY = Refusal(403, "forbidden", "Only an owner can make owners or change what an owner may do.")
_LAST_OWNER = Refusal(
    409, "last_owner", "An inbox needs an owner: make someone else an owner first, then try again."
)


def invite(actor: Role, role: Role) -> Refusal | None:
    """May ``actor`` invite someone as ``role``?"""
    if actor not in ("owner", "admin"):
        return _ONLY_MANAGERS
    if role == "owner" and actor != "owner":
        return _OWNERS_ONLY
    return None


def change_role(members: Mapping[str, Role], actor_id: str, target_id: str, role: Role) -> Refusal | None:
    """May ``actor_id`` give ``target_id`` the role ``role``? ``members``: user id → role now."""
    actor, current = members.get(actor_id), members.get(target_id)
    if current is None:
        return Refusal(404, "not_found", "No such member in this inbox: see GET /v1/members.")
    if actor not in ("owner", "admin"):
        return _ONLY_MANAGERS
    if actor != "owner" and "owner" in (current, role):
        return _OWNERS_ONLY
    if current == "owner" and role != "owner" and _owners(members) == 1:
        return _LAST_OWNER
    return None


def remove(members: Mapping[str, Role], actor_id: str, target_id: str) -> Refusal | None:
    """May ``actor_id`` remove ``target_id`` (themselves: leave)?"""
    actor, current = members.get(actor_id), members.get(target_id)
    if current is None:
        return Refusal(404, "not_found", "No such member in this inbox: see GET /v1/members.")
    if current == "owner" and _owners(members) == 1:
        return _LAST_OWNER
    if actor_id == target_id:
        return None  # anyone may leave
    if actor not in ("owner", "admin"):
        return _ONLY_MANAGERS
    if current == "owner" and actor != "owner":
        return _OWNERS_ONLY
    return None


def _owners(members: Mapping[str, Role]) -> int:
    return sum(1 for role in members.values() if role == "owner")
