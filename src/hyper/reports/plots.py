"""Pictures people would rather see than read."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only: no display on servers or CI
import matplotlib.pyplot as plt  # noqa: E402


def plot_expected_accuracy(diagnosis, path: str | Path, title: str) -> None:
    """The label accuracy to expect against budget, one line per routing."""
    budgets = [b * 100 for b in diagnosis.budgets]
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    for curve in diagnosis.expected_accuracy:
        axes.plot(budgets, curve.label_accuracy, marker=".", label=curve.strategy,
                  linestyle="--" if curve.strategy in ("random", "oracle") else "-")
    axes.set_xlabel("human budget (% of the pairs)")
    axes.set_ylabel("expected label accuracy of the hybrid set")
    axes.set_title(f"{title}: {diagnosis.verdict[:70]}...", fontsize=8)
    finish(figure, axes, path, "lower right")


Target = str | Path | IO


def finish(figure, axes, path: Target, legend: str = "best", image_format: str = "png") -> None:
    """Grid, legend, layout, and the picture written (a file, its folder made, or a stream)."""
    axes.grid(alpha=0.3)
    axes.legend(loc=legend, fontsize=8)
    figure.tight_layout()
    if isinstance(path, str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format=image_format)
    plt.close(figure)


TARGET_LABELS = {"label_accuracy": "predicted label accuracy of the hybrid set",
                 "rm_accuracy": "predicted reward-model accuracy"}


def plot_budget_curve(points: list[dict], optimal_fraction: float, path: Target, title: str,
                      target: str, distinguishable: bool, image_format: str = "png") -> None:
    """Predicted score against budget, the interval as a band; the best budget marked only when
    the curve is not flat within its interval."""
    fractions = [p["budget_fraction"] * 100 for p in points]
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    axes.fill_between(fractions, [p["lower"] for p in points], [p["upper"] for p in points],
                      alpha=0.25, label="prediction interval")
    axes.plot(fractions, [p["predicted"] for p in points], marker="o", label="predicted score")
    if distinguishable:
        axes.axvline(optimal_fraction * 100, linestyle="--", color="grey",
                     label=f"best budget {optimal_fraction:.0%}")
    axes.set_xlabel("human budget (% of the dataset, or of its total cost)")
    axes.set_ylabel(TARGET_LABELS.get(target, "predicted score"))
    axes.set_title(title)
    finish(figure, axes, path, image_format=image_format)


def plot_confidence_histograms(human: list[float], ai: list[float], path: Target) -> None:
    """The judge's confidence in the pairs routed to humans against those left to it (SVG)."""
    figure, axes = plt.subplots(figsize=(7, 3.4), dpi=120)
    bins = np.linspace(0.0, 1.0, 21)
    for values, label in ((human, f"routed to humans ({len(human)})"), (ai, f"left to the judge ({len(ai)})")):
        if values:
            axes.hist(values, bins=bins, alpha=0.55, density=True, label=label)
    axes.set_xlabel("judge confidence")
    axes.set_ylabel("density")
    finish(figure, axes, path, image_format="svg")
