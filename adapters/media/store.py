"""Object storage for media (photos, documents) behind one small interface.

The default keeps files under a local folder (``<data dir>/media``); an S3-compatible
store would implement the same three methods. Keys are ``<tenant>/<media id>``: a
tenant's files are found, exported or deleted by prefix.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol


class MediaStore(Protocol):
    async def put(self, key: str, content: bytes) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, keys: Sequence[str]) -> int:
        """Delete these files (what retention no longer keeps); how many there were."""
        ...

    async def delete_tenant(self, tenant_id: str) -> int:
        """Delete every file of the tenant (an erasure); how many there were."""
        ...

    async def aclose(self) -> None: ...


def media_key(tenant_id: str, media_id: str) -> str:
    return f"{tenant_id}/{media_id}"


class LocalMediaStore:
    """Files under ``root``; a file appears whole or not at all (written aside, renamed)."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, key: str) -> Path:
        path = (self._root / key).resolve()
        if self._root.resolve() not in path.parents:
            raise ValueError(f"media key {key!r} leaves the media folder")
        return path

    async def put(self, key: str, content: bytes) -> None:
        await asyncio.to_thread(self._write, self._path(key), content)

    @staticmethod
    def _write(path: Path, content: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        partial.write_bytes(content)
        partial.replace(path)

    async def get(self, key: str) -> bytes | None:
        path = self._path(key)
        return await asyncio.to_thread(lambda: path.read_bytes() if path.exists() else None)

    async def exists(self, key: str) -> bool:
        return self._path(key).exists()

    async def delete(self, keys: Sequence[str]) -> int:
        paths = [self._path(key) for key in keys]
        return await asyncio.to_thread(lambda: sum(_unlinked(path) for path in paths))

    async def delete_tenant(self, tenant_id: str) -> int:
        folder = self._path(tenant_id)
        return await asyncio.to_thread(self._delete_folder, folder)

    @staticmethod
    def _delete_folder(folder: Path) -> int:
        if not folder.is_dir():
            return 0
        files = [path for path in folder.rglob("*") if path.is_file()]
        shutil.rmtree(folder)
        return len(files)

    async def aclose(self) -> None:
        return None


def _unlinked(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
