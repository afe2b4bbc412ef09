import numpy as np
import pytest

from hyper_rm_trainer.evaluation import rewardbench_scores


def test_overall_is_the_mean_of_category_scores_not_of_pairs():
    subsets = ["alpacaeval-easy"] * 4 + ["mt-bench-hard"] * 2 + ["donotanswer"] * 2 + ["mine"] * 2
    correct = np.array([1, 1, 1, 1, 0, 1, 0, 0, 1, 0], dtype=bool)
    scores = rewardbench_scores(correct, subsets)
    assert scores["subsets"]["alpacaeval-easy"] == 1.0 and scores["subsets"]["mine"] == 0.5
    assert scores["categories"] == {"chat": 1.0, "chat_hard": 0.5, "safety": 0.0, "other": 0.5}
    assert scores["overall"] == pytest.approx(0.5)  # pair-weighted accuracy would be 0.6


def test_an_eval_set_without_subsets_is_one_subset():
    scores = rewardbench_scores(np.array([True, False, True]), ["", "", ""])
    assert scores == {"subsets": {"all": pytest.approx(2 / 3)}, "categories": {"other": pytest.approx(2 / 3)},
                      "overall": pytest.approx(2 / 3)}
