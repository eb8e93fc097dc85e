"""The model catalog as a table: which ids an agent may use, the family a dated id belongs
to, and what a model call costs — an id the catalog does not know is never free."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import agent
from domain.models import (
    HIGHEST_PRICE,
    KNOWN_MODELS,
    MODEL_PRICES,
    OFFLINE_MODEL,
    model_family,
    price_of,
)

FAMILIES = [m for m in KNOWN_MODELS if m != OFFLINE_MODEL]


@pytest.mark.parametrize(
    ("model_id", "family"),
    [
        ("claude-sonnet-4-6", "claude-sonnet-4-6"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("offline-1", "offline-1"),
        ("offline-1-20250101", None),  # the offline model has no dated ids
        ("claude-opus-4-1-2025080", None),  # seven digits: not a date
        ("claude-opus-4-1-latest", None),
        ("claude-opus-4-1-" + "\uff12" * 8, None),  # full-width digits
        ("claude-opus-4-120250805", None),
        ("claude-opus-9", None),
        ("gpt-4o", None),
        ("Claude-Sonnet-4-6", None),
        ("", None),
    ],
)
def test_a_model_id_belongs_to_a_family_or_to_none(model_id: str, family: str | None) -> None:
    assert model_family(model_id) == family


def test_an_unknown_model_costs_the_highest_price() -> None:
    assert MODEL_PRICES["claude-opus-4-1"] == HIGHEST_PRICE
    assert price_of("claude-mystery-7") == (HIGHEST_PRICE, False)
    # Before the catalog this id (the one the API reports for claude-opus-4-1) was free.
    assert agent.charge("claude-opus-4-1-20250805", 1_000_000, 1_000_000) == agent.Charge(
        90_000_000, priced=True
    )
    assert agent.charge("claude-mystery-7", 1_000_000, 1_000_000) == agent.Charge(90_000_000, priced=False)


@given(
    family=st.sampled_from(FAMILIES),
    date=st.integers(min_value=0, max_value=99_999_999),
    tokens=st.tuples(st.integers(0, 10**7), st.integers(0, 10**7)),
)
def test_a_dated_id_is_priced_as_its_family(family: str, date: int, tokens: tuple[int, int]) -> None:
    dated = f"{family}-{date:08d}"
    assert model_family(dated) == family
    assert agent.charge(dated, *tokens) == agent.charge(family, *tokens)


@given(model_id=st.text(max_size=60), tokens=st.tuples(st.integers(0, 10**7), st.integers(0, 10**7)))
def test_no_model_is_cheaper_than_its_catalog_price_or_free_unless_offline(
    model_id: str, tokens: tuple[int, int]
) -> None:
    charged = agent.charge(model_id, *tokens)
    family = model_family(model_id)
    assert charged.priced == (family is not None)
    if family is None:
        ceiling = max(agent.charge(known, *tokens).cost_micros for known in KNOWN_MODELS)
        assert charged.cost_micros == ceiling
    else:
        price = MODEL_PRICES[family]
        assert (
            charged.cost_micros
            == (tokens[0] * price.input_per_mtok + tokens[1] * price.output_per_mtok) // 10**6
        )
    if family != OFFLINE_MODEL and sum(tokens) >= 1_000_000:
        assert charged.cost_micros > 0
