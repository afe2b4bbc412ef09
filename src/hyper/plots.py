"""Pictures people would rather see than read."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers or CI
import matplotlib.pyplot as plt  # noqa: E402


def plot_budget_curve(points: list[dict], optimal_fraction: float, path: str | Path,
                      title: str) -> None:
    """Predicted score against budget, the interval as a band, the best budget marked."""
    fractions = [p["budget_fraction"] * 100 for p in points]
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    axes.fill_between(fractions, [p["lower"] for p in points], [p["upper"] for p in points],
                      alpha=0.25, label="prediction interval")
    axes.plot(fractions, [p["predicted"] for p in points], marker="o", label="predicted score")
    axes.axvline(optimal_fraction * 100, linestyle="--", color="grey",
                 label=f"best budget {optimal_fraction:.0%}")
    axes.set_xlabel("human budget (% of the dataset, or of its total cost)")
    axes.set_ylabel("predicted RM eval score")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
