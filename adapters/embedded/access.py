"""Letting one system user reach a folder without opening its parents to everyone.

As root, PostgreSQL runs as its own user, which must traverse every parent of its data
folder. Rather than ``chmod o+rx`` on each parent (every local user could then list and
enter them), the server user alone gets execute (traverse, not list) through a POSIX ACL
entry, written as the kernel's ``system.posix_acl_access`` attribute so no ``setfacl`` is
needed. Where a file system has no ACLs, the fallback is ``o+x`` only (never ``r``), on the
parents that lack it, with a warning.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from pathlib import Path

import structlog

log = structlog.get_logger()

_XATTR = "system.posix_acl_access"
_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_UNDEFINED_ID = 0xFFFFFFFF
_EXECUTE = 0x1
_ENTRY = struct.Struct("<HHI")
_HEADER = struct.Struct("<I")


def _parse(raw: bytes) -> list[tuple[int, int, int]]:
    (version,) = _HEADER.unpack_from(raw)
    if version != _VERSION:
        raise ValueError(f"unknown POSIX ACL version {version}")
    return [_ENTRY.unpack_from(raw, offset) for offset in range(_HEADER.size, len(raw), _ENTRY.size)]


def _from_mode(mode: int) -> list[tuple[int, int, int]]:
    return [
        (_USER_OBJ, (mode >> 6) & 7, _UNDEFINED_ID),
        (_GROUP_OBJ, (mode >> 3) & 7, _UNDEFINED_ID),
        (_OTHER, mode & 7, _UNDEFINED_ID),
    ]


def with_traverse(entries: list[tuple[int, int, int]], uid: int) -> list[tuple[int, int, int]]:
    """``entries`` plus execute for user ``uid`` (and in the mask, which caps named users)."""
    named = {(tag, ident): perm for tag, perm, ident in entries}
    named[(_USER, uid)] = named.get((_USER, uid), 0) | _EXECUTE
    group_obj = next(perm for tag, perm, _ in entries if tag == _GROUP_OBJ)
    named[(_MASK, _UNDEFINED_ID)] = named.get((_MASK, _UNDEFINED_ID), group_obj) | _EXECUTE
    # The kernel wants entries ordered by tag, then by id.
    return sorted(((tag, perm, ident) for (tag, ident), perm in named.items()), key=lambda e: (e[0], e[2]))


def _encode(entries: list[tuple[int, int, int]]) -> bytes:
    return _HEADER.pack(_VERSION) + b"".join(_ENTRY.pack(*entry) for entry in entries)


def _traversable_by(path: Path, uid: int, gid: int) -> bool:
    info = path.stat()
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == gid and not info.st_mode & stat.S_IXGRP:
        return False  # the owning group's bits apply to that user, not others'
    return bool(info.st_mode & stat.S_IXOTH)


def grant_traverse(path: Path, uid: int, gid: int) -> None:
    """Let ``uid`` traverse every parent of ``path`` (not ``path`` itself), opening them to nobody else."""
    for parent in Path(path).resolve().parents:
        if _traversable_by(parent, uid, gid):
            continue
        try:
            try:
                entries = _parse(os.getxattr(parent, _XATTR))
            except OSError as exc:
                if exc.errno != errno.ENODATA:
                    raise
                entries = _from_mode(parent.stat().st_mode)
            os.setxattr(parent, _XATTR, _encode(with_traverse(entries, uid)))
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
            log.warning("folder_opened_for_traverse", path=str(parent), reason="no POSIX ACLs here")
