import numpy as np

from hyper.judges.saved_judge import load_judge, save_judge
from hyper.judges.training import cross_fitted_labels, train_judge
from hyper.method.proxy_rm import pairwise_accuracy, predict_margins, train_heads
from hyper.method.reward_pairs import targets_and_weights
from hyper.method.run_spec import ProxySpec


def separable_pairs(n=400, dim=16, seed=0):
    """Pairs whose true reward is a fixed linear function of the features."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=dim)
    phi_a, phi_b = rng.normal(size=(n, dim)), rng.normal(size=(n, dim))
    labels = ["A" if a > b else "B" for a, b in zip(phi_a @ w, phi_b @ w, strict=True)]
    return phi_a.astype(np.float32), phi_b.astype(np.float32), labels


def test_bradley_terry_heads_learn_the_true_preference():
    phi_a, phi_b, labels = separable_pairs()
    targets, weights = targets_and_weights(labels)
    config = ProxySpec(steps=200, learning_rate=0.05)
    params, losses = train_heads(phi_a[:300], phi_b[:300], targets[None, :300], weights[None, :300], config)
    margins = predict_margins(params, phi_a[300:], phi_b[300:], config)
    assert pairwise_accuracy(margins, targets[300:])[0] > 0.9
    assert float(losses[0]) < 0.5


def test_one_vmapped_call_trains_one_head_per_label_set():
    phi_a, phi_b, labels = separable_pairs()
    targets, weights = targets_and_weights(labels)
    flipped = -targets
    config = ProxySpec(steps=100, learning_rate=0.05)
    params, _ = train_heads(phi_a, phi_b, np.stack([targets, flipped]), np.stack([weights, weights]), config)
    accuracy = pairwise_accuracy(predict_margins(params, phi_a, phi_b, config), targets)
    assert accuracy[0] > 0.9 and accuracy[1] < 0.1


def test_ties_carry_no_weight():
    targets, weights = targets_and_weights(["A", "tie", "B"])
    assert targets.tolist() == [1.0, 0.0, -1.0] and weights.tolist() == [1.0, 0.0, 1.0]


def test_cross_fitted_judge_labels_every_pair_without_seeing_its_label():
    phi_a, phi_b, labels = separable_pairs(n=300)
    judge = cross_fitted_labels(phi_a, phi_b, labels, ProxySpec(steps=150, learning_rate=0.05))
    assert len(judge.labels) == 300 and set(judge.labels) <= {"A", "B"}
    assert 0.8 < judge.agreement_with_human < 1.0
    assert ((judge.confidence >= 0.5) & (judge.confidence <= 1.0)).all()
    # The judgement follows the human labels of the other fold: flip them all and it flips.
    flipped = cross_fitted_labels(phi_a, phi_b, ["B" if label == "A" else "A" for label in labels],
                                  ProxySpec(steps=150, learning_rate=0.05))
    assert np.mean([a != b for a, b in zip(judge.labels, flipped.labels, strict=True)]) > 0.8


def test_a_saved_judge_applied_with_numpy_matches_the_jax_heads(tmp_path):
    """The tagger applies saved judges without JAX; its margins are the trained heads' own."""
    phi_a, phi_b, labels = separable_pairs(n=200)
    for hidden in (0, 8):
        config = ProxySpec(hidden=hidden, steps=50, learning_rate=0.05)
        judge = train_judge(phi_a, phi_b, labels, config, "some-embedding-model")
        save_judge(judge, tmp_path / f"judge-{hidden}.npz")
        loaded = load_judge(tmp_path / f"judge-{hidden}.npz")
        targets, weights = targets_and_weights(labels)
        params, _ = train_heads(phi_a, phi_b, targets[None], weights[None], config)
        expected = predict_margins(params, phi_a, phi_b, config)[0]
        assert loaded.config == config and loaded.embedding_model == "some-embedding-model"
        np.testing.assert_allclose(loaded.margins(phi_a, phi_b), expected, rtol=1e-4, atol=1e-4)
