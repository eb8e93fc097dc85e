"""The day at a glance, read across the inbox, connections and tenants read models: what waits
for a reply, the follow-ups due, the channels that need their owner, how much came in, the
messages in groups that mentioned the agent, and
(on the day an away period ended) what happened while away. The gateway answers
``GET /v1/digest`` with it; the notifier sends it each morning."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import msgspec

from adapters.postgres.database import Connection
from domain.away import Away
from projections import connections_queries, inbox_queries, tenants_queries
from projections.inbox_queries import FollowUp, Mention, Waiting, WhileAway

LISTED = 50  # items of each list at most


class ChannelNeed(msgspec.Struct, frozen=True):
    connection_id: str
    channel: str
    display_name: str
    state_message: str | None
    suggested_action: str | None


class AwayReport(msgspec.Struct, frozen=True):
    away: Away
    happened: WhileAway


class Digest(msgspec.Struct, frozen=True):
    date: date
    time_zone: str
    needs_reply: list[Waiting]
    follow_ups: list[FollowUp]
    channels: list[ChannelNeed]
    received: int
    mentions: list[Mention]  # in groups, that day
    while_away: AwayReport | None = None  # the away period that ended that day, if one did

    def empty(self) -> bool:
        """Nothing that needs anyone (a morning digest is not sent then)."""
        return not (self.needs_reply or self.follow_ups or self.channels or self.mentions or self.while_away)


async def digest(conn: Connection, tenant_id: str, zone: ZoneInfo, day: date) -> Digest:
    """The inbox's ``day`` on a clock in ``zone``."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = start + timedelta(days=1)
    waiting = await inbox_queries.waiting_since_before(conn, tenant_id, end, limit=LISTED)
    follow_ups = await inbox_queries.follow_ups_between(conn, tenant_id, start, end, limit=LISTED)
    received = await inbox_queries.received_between(conn, tenant_id, start, end)
    mentions = await inbox_queries.mentions_between(conn, tenant_id, start, end, limit=LISTED)
    channels = await connections_queries.channels(conn, tenant_id)
    needing = [
        ChannelNeed(c.connection_id, c.channel, c.display_name, c.state_message, c.suggested_action)
        for c in channels
        if c.state == "action_required"
    ]
    report = None
    if (away := await tenants_queries.away_ended_between(conn, tenant_id, start, end)) is not None:
        back = away.ended_at or away.until
        report = AwayReport(away, await inbox_queries.while_away(conn, tenant_id, away.started_at, back))
    return Digest(day, zone.key, waiting, follow_ups, needing, received, mentions, report)
