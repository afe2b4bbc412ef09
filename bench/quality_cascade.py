"""Judges in cascade on MT-Bench (four judges, each asked in both response orders): a cheap judge
(chatgpt), then a strong one (gpt-4), then a human, by calibrated error probabilities
(hyper.method.cascade), against the best single judge plus humans at the same money, over
random history/batch splits (thresholds and the best single judge chosen on the history).

Costs per pair are assumptions, stated here because the data carries none: both orders of a
~1,500-token judgement at 2023 list prices, chatgpt $0.004 and gpt-4 $0.09, llama-2 $0.002 and
palm-2 $0.002, against $1 for an expert's judgement.
"""

from __future__ import annotations

import numpy as np

from bench.quality_data import Prepared, history_of, in_parallel
from bench.quality_splits import split
from hyper.core.stats import Estimate
from hyper.method import cascade
from hyper.method.error_models import History, Inputs, calibrate, fold_of, subset

JUDGE_COSTS = {"chatgpt": 0.004, "gpt-4": 0.09, "llama-2": 0.002, "palm-2": 0.002}
CASCADE = ("chatgpt", "gpt-4")
HUMAN_COST = 1.0
MONEY = (0.1, 0.2, 0.3)  # per pair


def judge_history(data: Prepared, judge: str, rows: np.ndarray) -> History:
    """One judge's labels as an error model learns them: its confidence is whether its two
    response orders agree."""
    base = history_of(data, rows)
    labels = [data.instances[k].labels.get(judge) for k in rows]
    swapped = [data.instances[k].labels.get(f"{judge}_swapped") for k in rows]
    agree = np.array([np.nan if a is None or b is None else float(a == b) for a, b in zip(labels, swapped,
                                                                                           strict=True)])
    reference = [data.resolved.reference[k] for k in rows]
    correct = np.array([a is not None and a == r for a, r in zip(labels, reference, strict=True)])
    return History(Inputs(base.inputs.bits, agree), correct, base.human_correct, base.scored,
                   np.array([a is None for a in labels]), base.human_is_reference)


def cross_fitted_wrong(history: History, seed: int) -> np.ndarray:
    """Each history pair's error probability from a model fitted on the other folds."""
    wrong = np.ones(len(history.scored))
    fold = fold_of(len(history.scored), 5, seed)
    for k in range(5):
        model = calibrate(subset(history, np.flatnonzero(fold != k)), seed)
        held = np.flatnonzero(fold == k)
        wrong[held] = model.judge_error(subset(history, held).inputs)
    return np.where(history.forced, 1.0, wrong)


def labelled(data: Prepared, judges: tuple[str, ...], history: np.ndarray, rows: np.ndarray, seed: int,
             cross_fitted: bool) -> cascade.Labelled:
    """The judges' error probabilities on `rows` (cross-fitted on the history itself) and
    whether each label, then the human's, is right."""
    wrong, correct = [], []
    for judge in judges:
        own = judge_history(data, judge, rows)
        if cross_fitted:
            wrong.append(cross_fitted_wrong(own, seed))
        else:
            model = calibrate(judge_history(data, judge, history), seed)
            wrong.append(np.where(own.forced, 1.0, model.judge_error(own.inputs)))
        correct.append(own.judge_correct)
    human = history_of(data, rows).human_correct
    return cascade.Labelled(np.column_stack(wrong), np.column_stack([*correct, human]))


def scored_accuracy(stop: np.ndarray, outcome: cascade.Labelled, scored: np.ndarray) -> float:
    return cascade.accuracy(stop[scored], outcome.correct[scored])


def one_split(data: Prepared, seed: int) -> dict[float, tuple[float, float]]:
    history, batch = split(len(data.folds), seed)
    levels = [cascade.Level(j, JUDGE_COSTS[j]) for j in CASCADE]
    judges = tuple(JUDGE_COSTS)
    scored_h, scored_b = data.resolved.scored()[history], data.resolved.scored()[batch]
    cascade_h = labelled(data, CASCADE, history, history, seed, cross_fitted=True)
    cascade_b = labelled(data, CASCADE, history, batch, seed, cross_fitted=False)
    single_h = labelled(data, judges, history, history, seed, cross_fitted=True)
    single_b = labelled(data, judges, history, batch, seed, cross_fitted=False)
    out = {}
    for money in MONEY:
        thresholds = cascade.choose_thresholds(subset_labelled(cascade_h, scored_h), levels, HUMAN_COST, money)
        chained = scored_accuracy(cascade.route(cascade_b, thresholds, levels, HUMAN_COST, money), cascade_b,
                                  scored_b)
        out[money] = (chained, best_single(single_h, single_b, judges, money, scored_h, scored_b))
    return out


def subset_labelled(labels: cascade.Labelled, rows: np.ndarray) -> cascade.Labelled:
    return cascade.Labelled(labels.wrong[rows], labels.correct[rows])


def best_single(history: cascade.Labelled, batch: cascade.Labelled, judges: tuple[str, ...], money: float,
                scored_h: np.ndarray, scored_b: np.ndarray) -> float:
    """The single judge (plus humans) best on the history, measured on the batch."""
    def accuracy_of(labels: cascade.Labelled, j: int, scored: np.ndarray) -> float:
        stop = cascade.single_judge(labels, j, cascade.Level(judges[j], JUDGE_COSTS[judges[j]]), HUMAN_COST, money)
        return float(np.where(stop == 1, labels.correct[:, -1], labels.correct[:, j])[scored].mean())

    best = max(range(len(judges)), key=lambda j: accuracy_of(history, j, scored_h))
    return accuracy_of(batch, best, scored_b)


def run(data: Prepared, n_splits: int) -> list[dict]:
    results: dict[float, list[tuple[float, float]]] = {m: [] for m in MONEY}
    for outcome in in_parallel(one_split, range(n_splits), data, "cascade"):
        for money, pair in outcome.items():
            results[money].append(pair)
    rows = []
    for money, pairs in results.items():
        chained, single = np.array(pairs).T
        diff = bootstrap_mean(chained - single, seed=int(money * 100))
        rows.append({"money": money, "accuracy": float(chained.mean()), "best_single_judge_accuracy":
                     float(single.mean()), "diff": diff.mean, "ci_low": diff.ci_low, "ci_high": diff.ci_high,
                     "n_splits": len(pairs), "cascade": list(CASCADE), "costs": JUDGE_COSTS | {"human": HUMAN_COST}})
    return rows


def bootstrap_mean(values: np.ndarray, seed: int, resamples: int = 2000) -> Estimate:
    """The mean over splits with a percentile bootstrap interval over splits."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Estimate(float(values.mean()), float(low), float(high))


def print_rows(rows: list[dict]) -> None:
    print(f"   judges in cascade ({' -> '.join(CASCADE)} -> human) against the best single judge + humans, "
          "same money per pair")
    for r in rows:
        print(f"   money {r['money']:.2f}/pair: cascade {r['accuracy']:.3f}, best single judge "
              f"{r['best_single_judge_accuracy']:.3f}, diff {r['diff']:+.3f} [{r['ci_low']:+.3f}, "
              f"{r['ci_high']:+.3f}] over {r['n_splits']} splits")
