import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hyper.candidates import count_vectors, knapsack_mix, feature_carriers, resolve_budget, sample_mixes
from hyper.errors import InvalidArgument

binary_matrices = st.integers(1, 40).flatmap(
    lambda n: arrays(np.uint8, (n, 7), elements=st.integers(0, 1)))


@settings(max_examples=60, deadline=None)
@given(bits=binary_matrices, data=st.data())
def test_count_vector_equals_a_naive_count(bits, data):
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=len(bits), max_size=len(bits))))
    naive = [sum(int(bits[i, f]) for i in range(len(bits)) if mask[i]) for f in range(bits.shape[1])]
    assert count_vectors(mask, bits)[0].tolist() == naive


@settings(max_examples=60, deadline=None)
@given(bits=binary_matrices, data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_knapsack_takes_exactly_the_budget_without_repeats(bits, data, seed):
    budget = data.draw(st.integers(0, len(bits)))
    mask = knapsack_mix(feature_carriers(bits), len(bits), budget, np.random.default_rng(seed))
    assert mask.dtype == bool and mask.sum() == budget  # a mask cannot repeat an instance


def test_knapsack_prefers_carriers_of_the_features_it_walks():
    bits = np.zeros((10, 2), dtype=np.uint8)
    bits[:3, 0] = 1  # only instances 0-2 carry any feature
    mask = knapsack_mix(feature_carriers(bits), 10, 3, np.random.default_rng(0))
    assert np.flatnonzero(mask).tolist() == [0, 1, 2]


def test_sample_mixes_is_reproducible_under_a_seed():
    bits = np.random.default_rng(1).integers(0, 2, size=(50, 6)).astype(np.uint8)
    budgets = np.array([5, 10, 25])
    first = sample_mixes(bits, budgets, np.random.default_rng(7))
    assert (first == sample_mixes(bits, budgets, np.random.default_rng(7))).all()
    assert first.sum(axis=1).tolist() == [5, 10, 25]


def test_budget_as_fraction_or_count():
    assert resolve_budget(200, fraction=0.25) == 50
    assert resolve_budget(200, count=7) == 7
    for kwargs, field in [({"fraction": 1.5}, "budget.fraction"), ({"count": 201}, "budget.count"),
                          ({}, "budget"), ({"fraction": 0.1, "count": 1}, "budget")]:
        with pytest.raises(InvalidArgument) as caught:
            resolve_budget(200, **kwargs)
        assert caught.value.field == field
