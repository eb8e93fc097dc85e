"""Conversation briefs already written (``GET /v1/conversations/{id}/summary``), kept in
memory per gateway by their latest message: a new message makes a new one."""

from __future__ import annotations

from collections import OrderedDict

import msgspec

from domain.briefs import ActionItem

KEPT = 512  # briefs kept, the least recently asked dropped first


class BriefView(msgspec.Struct, frozen=True):
    conversation_id: str
    summary: str
    action_items: tuple[ActionItem, ...]
    through_message_id: str | None  # the latest message it covers
    model: str | None  # the model that wrote it; None: extractive


class BriefCache:
    """Briefs by (tenant, conversation, latest message): a new message makes a new one."""

    def __init__(self, size: int = KEPT) -> None:
        self._size = size
        self._kept: OrderedDict[tuple[str, str, str], BriefView] = OrderedDict()

    def get(self, key: tuple[str, str, str]) -> BriefView | None:
        found = self._kept.get(key)
        if found is not None:
            self._kept.move_to_end(key)
        return found

    def put(self, key: tuple[str, str, str], brief: BriefView) -> None:
        self._kept[key] = brief
        self._kept.move_to_end(key)
        while len(self._kept) > self._size:
            self._kept.popitem(last=False)
