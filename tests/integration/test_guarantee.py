"""The guaranteed mode holds what it promises on simulations with a known truth (40 histories
and batches, each fitted as `hyper train` fits an error model): slower than a unit test."""

import numpy as np

from hyper.method import label_quality
from hyper.method.label_quality import guaranteed_routing, hybrid_correct
from tests.unit.test_error_models import simulated


def test_the_guarantee_holds_in_at_least_nine_splits_of_ten_and_spends_less_than_everything():
    rng = np.random.default_rng(2)
    beta = rng.normal(0, 0.8, 10)
    held, budgets = [], []
    for seed in range(40):
        history, batch = simulated(rng, 700, beta, -1.0), simulated(rng, 300, beta, -1.0)
        fitted = label_quality.fit(history, [f"f{j}" for j in range(10)], "judge", [], seed)
        result = guaranteed_routing(fitted.calibration_records, fitted.calibrated.gains(batch.inputs), batch.forced,
                                    0.9, 0.1, 1.0)
        assert result.reachable
        held.append(hybrid_correct(batch, result.to_human).mean() >= 0.9)
        budgets.append(result.budget_fraction)
    assert np.mean(held) >= 0.9 and np.mean(budgets) < 0.9
