"""The README's "Where things are" tables name only files and folders that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _named_paths(row: str) -> list[str]:
    return [
        token.replace("<kind>", "telegram")
        for token in re.findall(r"`([^`\s]+)`", row)
        if token.endswith(("/", ".py", ".yaml", ".md"))
    ]


def _exists(token: str, bases: list[Path]) -> bool:
    candidates = [ROOT / token]
    for base in bases:
        candidates += [base / token, base.parent / token, *(sub / token for sub in base.glob("*/"))]
    return any(path.exists() for path in candidates)


def test_every_path_the_readme_names_exists() -> None:
    section = _section((ROOT / "README.md").read_text(), "Where things are")
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) > 15
    missing = []
    for row in rows:
        named = _named_paths(row)
        # A bare name is relative to a folder the same row names, e.g. `domain/` … `events.py`.
        bases = [ROOT / token if token.endswith("/") else (ROOT / token).parent for token in named]
        missing += [token for token in named if not _exists(token, bases)]
    assert not missing, f"README names what does not exist: {missing}"
