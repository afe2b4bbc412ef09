"""RewardBench-style evaluation: accuracy per subset, subsets grouped into categories, the
overall score as the mean of the category scores.

The grouping is RewardBench's (Lambert et al., 2024). A category's score here is the accuracy
over all its pairs (RewardBench weights subsets so, except Reasoning, where it balances math
against the code subsets); subsets it does not name form the category "other", and an eval
set without subsets (the bundled HH split) is one subset, "all".
"""

from __future__ import annotations

import numpy as np

REWARDBENCH_CATEGORIES: dict[str, tuple[str, ...]] = {
    "chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy",
             "mt-bench-med"),
    "chat_hard": ("mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor",
                  "llmbar-adver-GPTInst", "llmbar-adver-GPTOut", "llmbar-adver-manual"),
    "safety": ("refusals-dangerous", "refusals-offensive", "xstest-should-refuse",
               "xstest-should-respond", "donotanswer"),
    "reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python",
                  "hep-rust"),
}
CATEGORY_OF = {subset: category for category, subsets in REWARDBENCH_CATEGORIES.items()
               for subset in subsets}


def category_of(subset: str) -> str:
    return CATEGORY_OF.get(subset, "other")


def rewardbench_scores(correct: np.ndarray, subsets: list[str]) -> dict:
    """correct: (n_pairs,) booleans of one RM. Returns subset, category and overall scores."""
    names = np.array([s or "all" for s in subsets])
    correct = np.asarray(correct, dtype=bool)
    by_subset = {s: float(correct[names == s].mean()) for s in sorted(set(names))}
    categories = np.array([category_of(s) for s in names])
    by_category = {c: float(correct[categories == c].mean()) for c in sorted(set(categories))}
    return {"subsets": by_subset, "categories": by_category,
            "overall": float(np.mean(list(by_category.values())))}
