"""Mixes over more than two sources: assignments, count vectors and their columns, and the
mix file that the training Job reads."""

from __future__ import annotations

import numpy as np

from hyper.method.candidates import multi_source_assignments, multi_source_columns, multi_source_counts
from hyper.method.run_spec import load_mixes, save_mixes, source_role


def test_each_pair_goes_to_one_source_and_forced_pairs_to_the_human():
    rng = np.random.default_rng(0)
    bits = (rng.random((60, 9)) < 0.3).astype(np.uint8)
    forced = np.zeros(60, dtype=bool)
    forced[[3, 7]] = True
    assignments = multi_source_assignments(bits, 300, 2, rng, forced)
    assert assignments.shape == (300, 60) and set(np.unique(assignments)) == {0, 1, 2}
    assert (assignments[:, forced] == 1).all()
    shares = [(assignments == k).mean() for k in range(3)]
    assert all(0.15 < share < 0.6 for share in shares)  # budgets spread over every source
    counts = multi_source_counts(assignments, bits, 2)
    expected = (assignments[5] == 2).astype(np.float32) @ bits * (1000 / 60)
    assert counts.shape == (300, 18) and np.allclose(counts[5, 9:], expected)


def test_columns_name_the_source_as_route_expects():
    columns = multi_source_columns(["human", "gpt-4"], ["rouge::0.00-0.33", "safety_concern::high"])
    assert columns == ["rouge::0.00-0.33", "safety_concern::high", "gpt-4|rouge::0.00-0.33",
                       "gpt-4|safety_concern::high"]
    assert [source_role(k) for k in range(4)] == ["ai", "human", "paid2", "paid3"]


def test_mix_files_keep_assignments_and_old_files_still_load(tmp_path):
    assignments = np.array([[0, 1, 2], [2, 2, 0]], dtype=np.int8)
    save_mixes(tmp_path / "m.npz", ["r0", "r1"], ["a", "b", "c"], assignments, np.zeros((2, 4)), ["f0", "f1", "g|f0",
                                                                                                  "g|f1"])
    loaded = load_mixes(tmp_path / "m.npz")
    assert (loaded["assignments"] == assignments).all()
    assert loaded["human_masks"].tolist() == [[False, True, False], [False, False, False]]
    old = {k: v for k, v in np.load(tmp_path / "m.npz").items() if k != "assignments"}
    np.savez(tmp_path / "old.npz", **old)  # a file written before assignments existed
    assert (load_mixes(tmp_path / "old.npz")["assignments"] == old["human_masks"].astype(np.int8)).all()


def test_the_oracle_routes_fixes_first_and_harm_only_when_nothing_else_is_left():
    from hyper.data.label_sources import LabelRoles, ResolvedLabels

    # pairs: 0 no AI label, 1 judge wrong / human right, 2 both right, 3 judge right / human wrong, 4 unscored
    resolved = ResolvedLabels(LabelRoles("h", "a"), ("ref",), human=["A", "A", "A", "B", "A"],
                              ai=[None, "B", "A", "A", "B"], reference=["A", "A", "A", "A", None],
                              confidence=np.full(5, np.nan), ai_in_data=True)
    order = resolved.oracle_order()
    assert list(order[:2]) == [0, 1] and order[-1] == 3
    accuracy = [resolved.hybrid_correct(np.isin(np.arange(5), order[:k])).mean() for k in range(1, 6)]
    assert accuracy == [0.75, 1.0, 1.0, 1.0, 0.75]
