import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hyper.core.catalogue import CATALOGUE, FEATURE_INDEX, FEATURE_NAMES, feature_set_version
from hyper.core.errors import InvalidArgument
from hyper.core.features import FeatureMatrix, bin_index, binarize, percentile_ranks


def test_catalogue_has_the_papers_90_binary_features_and_the_judges_confidence():
    groups = [f.group for f in CATALOGUE]
    assert groups.count("textual") == 27  # 9 dimensions x 3 bins
    assert groups.count("descriptive") == 46 + 3 + 1 + 4 + 4 + 3 + 2
    assert groups.count("judge") == 3
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES) == 93
    assert "subject_of_expertise::Chemical engineering" in FEATURE_INDEX
    assert "format_constraints::present" in FEATURE_INDEX


def test_feature_set_version_is_stable():
    assert feature_set_version("a") == feature_set_version("a")
    assert feature_set_version("a") != feature_set_version("b")  # the tag backend is part of it
    # and so is every model behind the values, with its runtime and precision
    float32 = ("all-MiniLM-L6-v2|torch-2.13.0|torch.float32",)
    bfloat16 = ("all-MiniLM-L6-v2|torch-2.13.0|torch.bfloat16",)
    assert feature_set_version("a", float32) != feature_set_version("a", bfloat16)


def test_three_equal_bins_over_the_unit_interval_with_clipping():
    values = np.array([-0.2, 0.0, 0.32, 1 / 3, 0.5, 0.666, 2 / 3, 1.0, 1.7])
    assert bin_index(values).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_an_unknown_value_sets_no_bin():
    bits = binarize({"judge_confidence": np.array([0.1, np.nan, 1.0])}, 3)
    columns = [FEATURE_INDEX[f"judge_confidence::{b}"] for b in ("0.00-0.33", "0.33-0.67", "0.67-1.00")]
    assert bits[:, columns].tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 1]]


def test_percentile_ranks_share_ties():
    assert percentile_ranks(np.array([10, 20, 20, 40])).tolist() == [0.25, 0.625, 0.625, 1.0]


def test_binarize_sets_exactly_one_bin_per_computed_dimension():
    raw = {"rouge": np.array([0.1, 0.5, 0.9]), "prompt_len": np.array([5.0, 50.0, 500.0])}
    bits = binarize(raw, 3)
    assert bits.shape == (3, len(FEATURE_NAMES))
    assert bits.sum(axis=1).tolist() == [2, 2, 2]
    assert bits[0, FEATURE_INDEX["rouge::0.00-0.33"]] == 1
    assert bits[1, FEATURE_INDEX["rouge::0.33-0.67"]] == 1
    assert bits[2, FEATURE_INDEX["rouge::0.67-1.00"]] == 1
    # lengths are ranked first: 1/3, 2/3, 1 -> bins 1, 2, 2
    assert bits[0, FEATURE_INDEX["prompt_len::0.33-0.67"]] == 1
    assert bits[2, FEATURE_INDEX["prompt_len::0.67-1.00"]] == 1


def test_feature_matrix_aligns_columns_and_rejects_missing_ones():
    matrix = FeatureMatrix(["x", "y"], ["f1", "f2"], np.array([[1, 0], [0, 1]], dtype=np.uint8))
    assert matrix.aligned_to(["f2", "f1"]).tolist() == [[0, 1], [1, 0]]
    with pytest.raises(InvalidArgument, match="f3"):
        matrix.aligned_to(["f3"])
    with pytest.raises(InvalidArgument, match="shape"):
        FeatureMatrix(["x"], ["f1", "f2"], np.zeros((2, 2), dtype=np.uint8))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 5).map(float), st.just(float("nan")), st.just(float("inf"))),
                min_size=1, max_size=40))
def test_percentile_ranks_are_mean_ranks_with_ties_and_nans_sharing_theirs(values):
    def key(x: float) -> tuple[int, float]:  # NaN sorts last (after inf), NaNs equal
        return (1, 0.0) if math.isnan(x) else (0, x)

    def naive(x: float) -> float:
        below = sum(key(y) < key(x) for y in values)
        same = sum(key(y) == key(x) for y in values)
        return (2 * below + same + 1) / 2 / len(values)

    assert percentile_ranks(np.array(values)).tolist() == pytest.approx([naive(x) for x in values])
