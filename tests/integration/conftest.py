"""The integration tests' fixtures live in tests/conftest.py (shared with tests/e2e); the
helpers tests import by name are re-exported here."""

from tests.conftest import REPO_ROOT, Stack

__all__ = ["REPO_ROOT", "Stack"]
