"""Who may change whom in an inbox (domain/members.py): every actor role against every
target role, and the last owner, who can never be demoted, removed or leave."""

from __future__ import annotations

from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import members as rules
from domain.envelope import Role

ROLES: tuple[Role, ...] = get_args(Role)


def test_only_owners_and_admins_invite_and_only_owners_invite_owners() -> None:
    assert rules.invite("owner", "owner") is None
    assert rules.invite("admin", "admin") is None
    assert rules.invite("admin", "member") is None
    refused = rules.invite("admin", "owner")
    assert refused is not None
    assert refused.status == 403
    for role in ROLES:
        member = rules.invite("member", role)
        assert member is not None
        assert member.code == "forbidden"


@pytest.mark.parametrize(
    ("actor", "target", "new", "allowed"),
    [
        ("owner", "member", "admin", True),
        ("owner", "admin", "owner", True),
        ("owner", "owner2", "member", True),  # another owner remains
        ("admin", "member", "admin", True),
        ("admin", "admin2", "member", True),
        ("admin", "member", "owner", False),  # admins do not make owners
        ("admin", "owner", "member", False),  # nor touch them
        ("member", "admin", "member", False),
    ],
)
def test_role_changes(actor: str, target: str, new: Role, allowed: bool) -> None:
    people: dict[str, Role] = {
        "owner": "owner", "owner2": "owner", "admin": "admin", "admin2": "admin", "member": "member",
    }  # fmt: skip
    assert (rules.change_role(people, actor, target, new) is None) is allowed


def test_the_last_owner_cannot_be_demoted_removed_or_leave() -> None:
    people: dict[str, Role] = {"o": "owner", "a": "admin"}
    for refusal in (rules.change_role(people, "o", "o", "admin"), rules.remove(people, "o", "o")):
        assert refusal is not None
        assert (refusal.status, refusal.code) == (409, "last_owner")
    assert rules.change_role(people, "o", "o", "owner") is None  # no change is fine
    with_two = {**people, "p": "owner"}
    assert rules.remove(with_two, "o", "o") is None
    assert rules.remove(with_two, "p", "o") is None


def test_anyone_may_leave_and_strangers_are_not_found() -> None:
    people: dict[str, Role] = {"o": "owner", "p": "owner", "m": "member"}
    assert rules.remove(people, "m", "m") is None
    refusal = rules.remove(people, "m", "o")
    assert refusal is not None
    assert refusal.status == 403
    for missing in (rules.remove(people, "o", "x"), rules.change_role(people, "o", "x", "admin")):
        assert missing is not None
        assert missing.status == 404


@given(
    st.dictionaries(st.sampled_from("abcdef"), st.sampled_from(ROLES), min_size=1),
    st.sampled_from("abcdef"),
    st.sampled_from("abcdef"),
    st.sampled_from(ROLES),
    st.booleans(),
)
def test_no_allowed_change_leaves_an_inbox_without_an_owner(
    people: dict[str, Role], actor: str, target: str, role: Role, removing: bool
) -> None:
    if "owner" not in people.values():
        return  # every inbox starts with its owner
    decision = (
        rules.remove(people, actor, target) if removing else rules.change_role(people, actor, target, role)
    )
    if decision is None:
        after = dict(people)
        if removing:
            del after[target]
        else:
            after[target] = role
        assert "owner" in after.values()
