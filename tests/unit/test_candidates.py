import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hyper.method.candidates import count_vectors, first_in_order, knapsack_orders

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
def test_knapsack_takes_exactly_the_budget_and_never_repeats(bits, data, seed):
    orders = knapsack_orders(bits, 5, np.random.default_rng(seed))
    assert all(sorted(order) == list(range(len(bits))) for order in orders.tolist())
    budgets = np.array(data.draw(st.lists(st.integers(0, len(bits)), min_size=5, max_size=5)))
    masks = first_in_order(orders, budgets)
    assert masks.sum(axis=1).tolist() == budgets.tolist()


def naive_knapsack(bits, budget, rng):
    """The paper's walk, literally: features in random order, carriers in random order."""
    taken = []
    for feature in rng.permutation(bits.shape[1]):
        for row in rng.permutation(np.flatnonzero(bits[:, feature])):
            if row not in taken and len(taken) < budget:
                taken.append(int(row))
    return sorted(taken)


def test_vectorised_knapsack_matches_the_literal_walk_in_distribution():
    bits = np.zeros((6, 3), dtype=np.uint8)
    bits[[0, 1], 0] = 1
    bits[[1, 2, 3], 1] = 1
    bits[[4], 2] = 1  # row 5 carries nothing
    rng = np.random.default_rng(0)
    n = 6000
    literal = np.zeros(6)
    for _ in range(n):
        literal[naive_knapsack(bits, 2, rng)] += 1
    vectorised = first_in_order(knapsack_orders(bits, n, rng), np.full(n, 2)).sum(axis=0)
    assert np.allclose(vectorised / n, literal / n, atol=0.03)
    assert vectorised[5] == 0  # a row with no feature is only taken once the features run out


def test_knapsack_prefers_carriers_of_the_features_it_walks():
    bits = np.zeros((10, 2), dtype=np.uint8)
    bits[:3, 0] = 1  # only rows 0-2 carry any feature
    mask = first_in_order(knapsack_orders(bits, 1, np.random.default_rng(0)), np.array([3]))
    assert np.flatnonzero(mask[0]).tolist() == [0, 1, 2]


def test_knapsack_is_reproducible_under_a_seed():
    bits = np.random.default_rng(1).integers(0, 2, size=(50, 6)).astype(np.uint8)
    first = knapsack_orders(bits, 4, np.random.default_rng(7))
    assert (first == knapsack_orders(bits, 4, np.random.default_rng(7))).all()
