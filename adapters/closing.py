"""``async with`` for the adapters that hold a client: entering gives the adapter, leaving
calls its ``aclose``."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class ClosesOnExit:
    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
