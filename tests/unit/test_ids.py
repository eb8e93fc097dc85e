from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from domain import ids, subjects


@given(st.integers(min_value=0, max_value=2**48 - 1), st.integers(min_value=0, max_value=2**48 - 1))
def test_ulids_sort_by_time(a: int, b: int) -> None:
    first, second = ids.ulid(a, bytes(10)), ids.ulid(b, bytes(10))
    assert (first < second) == (a < b)
    assert ids.ulid_time_ms(first) == a


def test_ids_are_subject_tokens() -> None:
    for prefix in (ids.TENANT, ids.CONVERSATION, ids.MESSAGE, ids.CONNECTION):
        assert subjects.is_token(ids.new_id(prefix))


def test_stable_id_depends_only_on_key() -> None:
    assert ids.stable_id("m", "telegram:cn_1:42") == ids.stable_id("m", "telegram:cn_1:42")
    assert ids.stable_id("m", "telegram:cn_1:42") != ids.stable_id("m", "telegram:cn_1:43")
    assert subjects.is_token(ids.stable_id("m", "x"))
