"""Error models mean what they say, on simulations with a known truth: calibrated probabilities,
predicted label accuracies inside [0, 1] whose 90% interval covers about 90% of routed batches
whatever selects the pairs, a guarantee that holds, and an artifact that round-trips as JSON."""

import json

import numpy as np
import pytest
from scipy.stats import hypergeom

from hyper.core.errors import InvalidArgument
from hyper.method import label_quality
from hyper.method.error_models import ErrorModel, History, Inputs, calibrate, count_interval, predict_accuracy
from hyper.method.label_quality import error_bound, first, guaranteed_routing, hybrid_correct, ranking

LEVEL = 0.9


def simulated(rng: np.random.Generator, n: int, beta: np.ndarray, intercept: float, human_error: float = 0.05
              ) -> History:
    """Pairs with binary features and a judge confidence that both carry the judge's errors."""
    bits = (rng.random((n, len(beta))) < 0.3).astype(np.uint8)
    confidence = rng.random(n)
    logit = intercept + bits @ beta - 2.0 * (confidence - 0.5)
    judge_right = rng.random(n) > 1 / (1 + np.exp(-logit))
    return History(Inputs(bits, confidence), judge_right, rng.random(n) > human_error, np.ones(n, dtype=bool),
                   np.zeros(n, dtype=bool), human_is_reference=False)


def test_calibrated_probabilities_match_the_error_rates_of_new_pairs():
    rng = np.random.default_rng(0)
    beta = rng.normal(0, 1.0, 10)
    model = calibrate(simulated(rng, 2000, beta, -1.0), seed=0)
    new = simulated(rng, 20000, beta, -1.0)
    probability = model.judge_error(new.inputs)
    for low, high in ((0.0, 0.2), (0.2, 0.4), (0.4, 0.7), (0.7, 1.0)):
        band = (probability >= low) & (probability < high)
        assert abs(probability[band].mean() - (~new.judge_correct[band]).mean()) < 0.04, (low, high)


def test_a_90_percent_interval_covers_about_90_percent_of_routed_batches_whatever_routes_them():
    rng = np.random.default_rng(1)
    routings = (("error_model", 0.1), ("error_model", 0.5), ("uncertainty", 0.25), ("random", 0.25))
    hits: dict[tuple[str, float], list[bool]] = {routing: [] for routing in routings}
    for _ in range(60):
        beta, intercept = rng.normal(0, 0.8, 10), rng.normal(-1.0, 0.3)
        model = calibrate(simulated(rng, 600, beta, intercept), seed=0)
        batch = simulated(rng, 300, beta, intercept)
        for strategy, budget in routings:
            order = ranking(strategy, model.gains(batch.inputs), batch.inputs.confidence, batch.forced, rng)
            chosen = first(order, int(budget * 300))
            predicted = predict_accuracy(model, batch.inputs, chosen, LEVEL)
            assert 0.0 <= predicted.low <= predicted.mean <= predicted.high <= 1.0
            hits[(strategy, budget)].append(predicted.low <= hybrid_correct(batch, chosen).mean() <= predicted.high)
    for routing, covered in hits.items():  # 60 batches: a true 90% lands in here by chance 95% of the time
        assert 0.83 <= np.mean(covered) <= 0.97, routing


def test_an_interval_never_leaves_zero_and_one_even_near_them():
    for mean, variance, m in ((0.999, 1e-4, 50), (0.001, 1e-4, 50), (0.5, 0.3, 10), (0.97, 1e-6, 10**5)):
        low, high = count_interval(mean, variance, m, LEVEL)
        assert 0.0 <= low <= high <= 1.0


def test_the_hypergeometric_bound_is_the_exact_inversion():
    errors, n_history, n_batch, risk = 12, 100, 40, 0.1
    b = error_bound(errors, n_history, n_batch, risk)
    assert hypergeom.cdf(errors, n_history + n_batch, errors + b, n_history) > risk
    assert hypergeom.cdf(errors, n_history + n_batch, errors + b + 1, n_history) <= risk




def test_an_unreachable_target_sends_everything_to_humans_and_says_so():
    rng = np.random.default_rng(3)
    history = simulated(rng, 400, rng.normal(0, 0.8, 10), -1.0, human_error=0.2)
    fitted = label_quality.fit(history, [f"f{j}" for j in range(10)], "judge", [], 0)
    batch = simulated(rng, 100, rng.normal(0, 0.8, 10), -1.0)
    result = guaranteed_routing(fitted.calibration_records, fitted.calibrated.gains(batch.inputs), batch.forced,
                                0.95, 0.1, 1.0)
    assert not result.reachable and result.to_human.all() and result.budget_fraction == 1.0


def test_auto_takes_the_strategy_of_larger_cross_fitted_gain_and_the_artifact_round_trips():
    rng = np.random.default_rng(4)
    fitted = label_quality.fit(simulated(rng, 600, rng.normal(0, 1.0, 10), -1.0), [f"f{j}" for j in range(10)],
                               "judge", ["other"], 0)
    name, gain = label_quality.best_strategy(fitted, 0.25)
    others = [label_quality.gain_at(fitted, s, 0.25) for s in fitted.gains if s != name]
    assert all(gain.mean >= other.mean for other in others) and gain.ci_low <= gain.mean <= gain.ci_high
    again = ErrorModel.from_json(json.loads(json.dumps(fitted.to_json())))
    batch = simulated(rng, 50, rng.normal(0, 1.0, 10), -1.0)
    assert np.allclose(again.calibrated.gains(batch.inputs), fitted.calibrated.gains(batch.inputs))
    assert 0.5 < fitted.skill.auc.mean <= 1.0 and fitted.skill.calibration_error.ci_low >= 0.0
    for estimate in (fitted.skill.auc, fitted.skill.calibration_error):  # each inside its own interval
        assert estimate.ci_low <= estimate.mean <= estimate.ci_high


def test_a_history_too_small_to_learn_from_is_refused_by_name():
    rng = np.random.default_rng(5)
    with pytest.raises(InvalidArgument) as caught:
        label_quality.fit(simulated(rng, 6, np.zeros(3), -1.0), ["a", "b", "c"], "judge", [], 0)
    assert caught.value.field == "history"
