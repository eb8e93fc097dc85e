"""The part of requirements.lock the product needs to run, for the container image.

requirements.lock pins every package with its hashes, the development tools included (it is
compiled with ``--extra dev``). This keeps the entries that the product's own dependencies
(``[project] dependencies`` in pyproject.toml) need, found through the lock's ``# via``
notes, and writes them out unchanged — version, markers and hashes — so the image still
installs with ``pip install --require-hashes --no-deps``.

    python infra/runtime_lock.py requirements.lock pyproject.toml > runtime.lock

Standard library only: it runs in the image's build stage before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

# What `uv pip compile` writes in a "# via" note for a requirement of the project itself.
PROJECT_NOTE = re.compile(r".+ \(pyproject\.toml\)$")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them: ``PyYAML`` and ``pyyaml`` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Entry:
    """One pinned requirement of the lock: its lines as written, and who needs it."""

    name: str
    text: str
    needed_by: tuple[str, ...]


def parse_lock(text: str) -> list[Entry]:
    """Every entry of a ``uv pip compile`` lock: a requirement line, its hash lines and its
    ``# via`` notes (one parent on the line, or one per following ``#   name`` line)."""
    entries: list[Entry] = []
    lines: list[str] = []

    def close() -> None:
        if not lines:
            return
        found = _NAME.match(lines[0])
        if found is None:
            raise ValueError(f"not a requirement: {lines[0]!r}")
        parents = []
        for line in lines[1:]:
            note = line.strip().removeprefix("#").strip()
            if line.strip().startswith("#") and note != "via":
                parents.append(note.removeprefix("via ").strip())
        entries.append(Entry(normalize(found.group()), "\n".join(lines) + "\n", tuple(parents)))
        lines.clear()

    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace() and not line.startswith("#"):
            close()
        if lines or not line.startswith("#"):  # comments above the first entry are the header
            lines.append(line)
    close()
    return entries


def project_dependencies(pyproject: str) -> set[str]:
    """The names in ``[project] dependencies`` (extras and version bounds left off)."""
    declared = tomllib.loads(pyproject)["project"]["dependencies"]
    names = set()
    for requirement in declared:
        found = _NAME.match(requirement)
        if found is None:
            raise ValueError(f"not a requirement: {requirement!r}")
        names.add(normalize(found.group()))
    return names


def runtime_entries(entries: list[Entry], direct: set[str]) -> list[Entry]:
    """The entries ``direct`` needs, directly or through each other, in the lock's order.

    An entry is kept when the project needs it directly, or when one of its ``# via`` parents
    is kept. The notes do not say which extra of a parent asked for a package, so a package
    only a development tool's extra wants could be kept too; never one the product needs left out.
    """
    kept = {entry.name for entry in entries if entry.name in direct}
    missing = direct - {entry.name for entry in entries}
    if missing:
        raise ValueError(f"the lock has no entry for {sorted(missing)}: run `make lock`")
    changed = True
    while changed:
        changed = False
        for entry in entries:
            if entry.name in kept:
                continue
            parents = {normalize(p) for p in entry.needed_by if not PROJECT_NOTE.fullmatch(p)}
            if parents & kept:
                kept.add(entry.name)
                changed = True
    return [entry for entry in entries if entry.name in kept]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: runtime_lock.py REQUIREMENTS_LOCK PYPROJECT_TOML > runtime.lock", file=sys.stderr)
        return 2
    lock, pyproject = (Path(arg).read_text() for arg in argv)
    kept = runtime_entries(parse_lock(lock), project_dependencies(pyproject))
    sys.stdout.write("".join(entry.text for entry in kept))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
