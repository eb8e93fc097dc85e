"""Every read model the product maintains."""

from __future__ import annotations

from projections.agents import AgentsProjection
from projections.base import Projection
from projections.connections import ConnectionsProjection
from projections.contacts import ContactsProjection
from projections.devices import DevicesProjection
from projections.inbox import InboxProjection
from projections.tenants import TenantsProjection
from projections.usage import UsageProjection


def all_projections() -> tuple[Projection, ...]:
    return (
        TenantsProjection(),
        ConnectionsProjection(),
        InboxProjection(),
        UsageProjection(),
        AgentsProjection(),
        DevicesProjection(),
        ContactsProjection(),
    )


def by_name(name: str) -> Projection:
    for projection in all_projections():
        if projection.name == name:
            return projection
    known = ", ".join(p.name for p in all_projections())
    raise LookupError(f"no read model named {name!r}; known: {known}")
