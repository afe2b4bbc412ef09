"""Turning raw per-instance values into the binary feature matrix, and the matrix itself."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hyper.core.catalogue import FEATURE_INDEX, FEATURE_NAMES, LENGTH_DIMENSIONS, N_BINS, bin_label
from hyper.core.errors import InvalidArgument


@dataclass
class FeatureMatrix:
    """Binary features: one row per instance, one uint8 column per catalogue feature."""

    instance_ids: list[str]
    feature_names: list[str]
    bits: np.ndarray  # (n_instances, n_features) uint8
    feature_set_version: str = ""

    def __post_init__(self) -> None:
        expected = (len(self.instance_ids), len(self.feature_names))
        if self.bits.shape != expected:
            raise InvalidArgument("features.bits", f"shape {self.bits.shape}, expected {expected}")

    @property
    def n_instances(self) -> int:
        return len(self.instance_ids)

    def aligned_to(self, feature_names: list[str]) -> np.ndarray:
        """The bits with columns in `feature_names` order (a model's order); unknown -> error."""
        return align_columns(self.bits, self.feature_names, feature_names, "features")


def column_positions(names: list[str], wanted: list[str], field: str) -> list[int]:
    """Where each of `wanted` sits among `names`: the one place columns are matched by name.
    A wanted name that `names` lacks is an error naming `field`; extra names are ignored."""
    index = {name: i for i, name in enumerate(names)}
    missing = [name for name in wanted if name not in index]
    if missing:
        raise InvalidArgument(f"{field}.feature_names", f"lacks {missing[:5]}")
    return [index[name] for name in wanted]


def align_columns(values: np.ndarray, names: list[str], wanted: list[str], field: str) -> np.ndarray:
    """`values`' columns (named `names`) reordered to `wanted`, e.g. a model's feature order."""
    return np.asarray(values)[:, column_positions(names, wanted, field)]


def bin_index(values: np.ndarray) -> np.ndarray:
    """Three equal bins over [0, 1]: [0, 1/3), [1/3, 2/3), [2/3, 1]; values are clipped."""
    clipped = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    return np.minimum((clipped * N_BINS).astype(np.int64), N_BINS - 1)


def percentile_ranks(values: np.ndarray) -> np.ndarray:
    """Rank within the dataset as a fraction in (0, 1]; ties share their average rank."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return values
    # One sort, then each run of equal values (NaNs count as equal: they sort last together)
    # gets the mean of its ranks; a million values take a tenth of a second.
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    nan = np.isnan(ordered)
    starts_run = np.r_[True, ~((ordered[1:] == ordered[:-1]) | (nan[1:] & nan[:-1]))]
    run = np.cumsum(starts_run) - 1
    first = np.flatnonzero(starts_run)
    size = np.diff(np.r_[first, len(values)])
    ranks = np.empty(len(values))
    ranks[order] = (2 * first[run] + size[run] + 1) / 2.0 / len(values)
    return ranks


def binarize(raw: dict[str, np.ndarray], n_instances: int) -> np.ndarray:
    """Binary matrix over the whole catalogue from raw numeric values (one array per dimension).

    Dimensions absent from `raw` (not computed yet) stay all-zero, and so does an instance
    whose value is NaN (unknown, e.g. no judge confidence).
    """
    bits = np.zeros((n_instances, len(FEATURE_NAMES)), dtype=np.uint8)
    for dimension, values in raw.items():
        values = np.asarray(values, dtype=np.float64)
        scaled = percentile_ranks(values) if dimension in LENGTH_DIMENSIONS else values
        rows = np.flatnonzero(np.isfinite(scaled))
        columns = np.array([FEATURE_INDEX[f"{dimension}::{bin_label(i)}"] for i in range(N_BINS)])
        bits[rows, columns[bin_index(scaled[rows])]] = 1
    return bits
