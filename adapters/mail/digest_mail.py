"""The morning digest as the values of its mail (``templates.py`` kind ``digest``): a headline
and one line per item, plain text (the template escapes it for HTML)."""

from __future__ import annotations

from domain import notifications
from projections.digest_queries import Digest

MAX_LINES = 20  # of each list; the inbox has the rest


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def headline(found: Digest) -> str:
    return notifications.digest_headline(
        needs_reply=len(found.needs_reply), follow_ups=len(found.follow_ups), channels=len(found.channels),
        mentions=len(found.mentions),
        away_received=found.while_away.happened.received if found.while_away else None,
    ) or "nothing waits for you"  # fmt: skip


def lines(found: Digest) -> list[str]:
    out: list[str] = []
    if found.needs_reply:
        out.append("Waiting for your reply:")
        out += [
            f"- {w.title or w.channel} ({w.channel}): {(w.last_message_preview or '').strip()[:80]}"
            for w in found.needs_reply[:MAX_LINES]
        ]
    if found.follow_ups:
        out.append("Follow-ups due today:")
        out += [
            f"- {f.title or f.conversation_id}: {f.note or 'follow up'}" for f in found.follow_ups[:MAX_LINES]
        ]
    if found.mentions:
        out.append("Mentioned in groups:")
        out += [f"- {m.sender_name} in {m.title}: {m.text[:80]}" for m in found.mentions[:MAX_LINES]]
    if found.channels:
        out.append("Channels that need you:")
        out += [
            f"- {c.display_name} ({c.channel}): {c.state_message or 'reconnect it'}" for c in found.channels
        ]
    if (away := found.while_away) is not None:
        h = away.happened
        out.append(
            f"While you were away: {_plural(h.received, 'message', 'messages')} in"
            f" {_plural(h.conversations, 'conversation', 'conversations')}; the away answer went to"
            f" {h.noticed}; {h.still_waiting} still waiting for a reply."
        )
    return out


def values(found: Digest, link: str) -> dict[str, str]:
    return {
        "link": link,
        "day": found.date.strftime("%A %d %B").replace(" 0", " "),
        "headline": headline(found),
        "items": "\n".join(lines(found)),
    }
