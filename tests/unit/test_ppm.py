import json
import threading

import numpy as np
import pytest

from hyper.core.errors import InvalidArgument, NotFound
from hyper.method.performance_models import PerformanceModel, QuadraticForm, Skill
from hyper_ppm.fitting import fit_ppm
from hyper_ppm.store import ModelRegistry, RunStore


def synthetic_runs(n_runs=60, n_features=5, seed=0, curvature=0.0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 300, size=(n_runs, n_features)).astype(float)
    weights = np.array([2e-4, -1e-4, 0.0, 5e-4, 1e-4])[:n_features]
    scores = 0.55 + counts @ weights - curvature * counts[:, 0] ** 2 + rng.normal(0, 1e-4, n_runs)
    return counts, scores, weights


def test_linear_ppm_recovers_a_known_linear_relation_and_reports_its_skill():
    counts, scores, weights = synthetic_runs()
    ppm = fit_ppm([f"f{i}" for i in range(5)], counts, scores, seed=1)
    assert np.allclose(ppm.form.linear, weights, atol=2e-5)
    assert abs(ppm.form.intercept - 0.55) < 0.01
    assert ppm.skill.spearman > 0.95 and ppm.skill.demonstrated and ppm.skill.n_runs == 60
    assert ppm.skill.ci_low <= ppm.skill.spearman <= ppm.skill.ci_high
    assert ppm.metrics["cv_rmse"] < 1e-3 and len(ppm.residuals) == 60


def test_a_ppm_fitted_on_noise_shows_no_skill():
    counts, _, _ = synthetic_runs()
    noise = np.random.default_rng(9).normal(0.6, 0.01, len(counts))
    ppm = fit_ppm([f"f{i}" for i in range(5)], counts, noise, seed=1)
    assert not ppm.skill.demonstrated and ppm.skill.ci_low <= 0 <= ppm.skill.ci_high


def test_quadratic_ppm_folds_polynomial_terms_into_one_quadratic_form():
    counts, scores, _ = synthetic_runs(n_runs=120, curvature=2e-6)
    ppm = fit_ppm([f"f{i}" for i in range(5)], counts, scores, kind="quadratic")
    q = ppm.form.quadratic
    assert np.allclose(q, q.T)
    assert q[0, 0] == pytest.approx(-2e-6, rel=0.05)
    assert np.allclose(ppm.predict(counts), scores, atol=1e-3)
    linear = fit_ppm([f"f{i}" for i in range(5)], counts, scores, kind="linear")
    assert np.mean((ppm.predict(counts) - scores) ** 2) < np.mean((linear.predict(counts) - scores) ** 2)


def test_lightgbm_ppm_round_trips_as_text_not_pickle():
    counts, scores, _ = synthetic_runs(n_runs=80)
    ppm = fit_ppm([f"f{i}" for i in range(5)], counts, scores, kind="lightgbm")
    text = json.dumps(ppm.to_json())
    again = PerformanceModel.from_json(json.loads(text))
    assert np.allclose(again.predict(counts), ppm.predict(counts))
    assert ppm.skill.spearman > 0.5
    assert again.quadratic_form is None and again.skill == ppm.skill


def test_intervals_contain_their_point_and_widen_with_the_level():
    counts, scores, _ = synthetic_runs(n_runs=40)
    noisy = scores + np.random.default_rng(2).normal(0, 0.01, len(scores))
    ppm = fit_ppm([f"f{i}" for i in range(5)], counts, noisy, seed=3)
    point = ppm.predict(counts[:5])
    lower, upper = ppm.predict_interval(counts[:5], 0.9)
    assert ((lower < point) & (point < upper)).all()
    narrow, wide = ppm.predict_interval(counts[:5], 0.5), ppm.predict_interval(counts[:5], 0.99)
    assert ((narrow[1] - narrow[0]) < (wide[1] - wide[0])).all()


NO_SKILL = Skill(0.0, -0.5, 0.5, 10)


def test_gains_are_prediction_minus_prediction_of_nothing():
    ppm = PerformanceModel("linear", ["a", "b", "c"], QuadraticForm(0.3, np.array([0.5, -1.0, 2.0])),
                           NO_SKILL, np.zeros(3))
    rows = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]])
    assert ppm.gains(rows).tolist() == [2.5, -1.0, 0.0]


def test_artifact_round_trips_through_json():
    ppm = PerformanceModel("quadratic", ["a", "b"], QuadraticForm(0.1, np.array([0.25, -0.5]),
                                                                  np.array([[1.0, 2.0], [2.0, 0.0]])),
                           NO_SKILL, np.array([0.01, 0.02]), "label_accuracy", 300, {"train_rmse": 0.01})
    again = PerformanceModel.from_json(json.loads(json.dumps(ppm.to_json())))
    assert again.feature_names == ["a", "b"] and again.predict([[1, 1]])[0] == ppm.predict([[1, 1]])[0]
    assert (again.skill, again.target, again.pool_size) == (NO_SKILL, "label_accuracy", 300)
    with pytest.raises(InvalidArgument):
        PerformanceModel.from_json({"format": "pickle"})


def test_fit_refuses_too_few_runs_and_unknown_kinds():
    counts, scores, _ = synthetic_runs(n_runs=3)
    with pytest.raises(InvalidArgument, match="at least"):
        fit_ppm(["a"] * 5, counts, scores)
    with pytest.raises(InvalidArgument) as caught:
        fit_ppm(["a"] * 5, *synthetic_runs()[:2], kind="cubic")
    assert caught.value.field == "kind"


def test_registry_versions_increase_and_latest_is_the_newest(tmp_path):
    registry = ModelRegistry(tmp_path)
    with pytest.raises(NotFound):
        registry.load("default")
    v1, _ = registry.save("default", {"kind": "linear", "coef": [1.0]})
    v2, _ = registry.save("default", {"kind": "linear", "coef": [2.0]})
    assert v1.startswith("v1-") and v2.startswith("v2-")
    assert registry.load("default")["coef"] == [2.0]
    assert registry.load("default", v1)["coef"] == [1.0]
    with pytest.raises(InvalidArgument):
        registry.load("../etc")


def test_a_run_is_recorded_exactly_once_even_under_concurrent_writers(tmp_path):
    store = RunStore(tmp_path)
    results = []
    run = {"experiment": "exp", "run_id": "r1", "state": "succeeded", "eval_score": 0.6}
    threads = [threading.Thread(target=lambda: results.append(store.record(run))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    assert store.list("exp") == [run]
    assert list((tmp_path / "runs" / "exp").iterdir()) == [tmp_path / "runs" / "exp" / "r1.json"]


def test_a_failure_stands_until_a_retry_records_the_result_which_is_final(tmp_path):
    store = RunStore(tmp_path)
    failed = {"experiment": "exp", "run_id": "r1", "state": "failed", "failure_reason": "OOMKilled"}
    succeeded = {"experiment": "exp", "run_id": "r1", "state": "succeeded", "eval_score": 0.6}
    other = {"experiment": "exp", "run_id": "r2", "state": "failed", "failure_reason": "evicted"}
    assert store.record(failed) and store.record(other)
    assert store.list("exp") == [failed, other]
    assert store.record(succeeded)
    assert store.list("exp") == [succeeded, other]
    assert not store.record(failed)  # a straggling attempt cannot undo a result
    assert store.list() == [succeeded, other]


def test_a_stored_ppm_changed_after_it_was_saved_is_refused_on_load(tmp_path):
    from harness.models import known_ppm
    from hyper.core.catalogue import FEATURE_NAMES
    from hyper_ppm.store import CorruptState

    registry = ModelRegistry(tmp_path)
    version, _ = registry.save("m", known_ppm(list(FEATURE_NAMES), QuadraticForm(0.6, np.zeros(len(FEATURE_NAMES))))
                               .to_json())
    assert registry.load("m")["version"] == version
    path = tmp_path / "models" / "m" / f"{version}.json"
    stored = json.loads(path.read_text())
    stored["form"]["intercept"] = 0.99  # a better-looking model, edited by hand
    path.write_text(json.dumps(stored))
    with pytest.raises(CorruptState, match="does not match its recorded sha256"):
        registry.load("m")
    path.write_text("{cut")
    with pytest.raises(CorruptState, match="not valid JSON"):
        registry.load("m")


def test_an_empty_run_record_left_by_a_crash_is_quarantined_and_the_real_result_lands(tmp_path):
    store = RunStore(tmp_path)
    experiment = tmp_path / "runs" / "exp"
    experiment.mkdir(parents=True)
    (experiment / "r1.json").write_text("")  # a record whose content never reached the disk
    other = {"experiment": "exp", "run_id": "r2", "state": "succeeded", "eval_score": 0.5}
    assert store.record(other)
    assert store.list("exp") == [other]  # the listing survives it
    assert [p.name.split(".json")[0] for p in (experiment / "quarantine").iterdir()] == ["r1"]
    result = {"experiment": "exp", "run_id": "r1", "state": "succeeded", "eval_score": 0.6}
    (experiment / "r1.json").write_text("")
    assert store.record(result)  # not blocked for ever by the leftover
    assert store.list("exp") == [result, other]


def test_a_damaged_model_version_is_left_out_of_the_list_and_refused_by_name(tmp_path):
    from hyper_ppm.store import CorruptState

    registry = ModelRegistry(tmp_path)
    v1, _ = registry.save("m", {"kind": "linear", "coef": [1.0]})
    v2, _ = registry.save("m", {"kind": "linear", "coef": [2.0]})
    (tmp_path / "models" / "m" / f"{v2}.json").write_text("")
    assert [model["version"] for model in registry.list()] == [v1]
    with pytest.raises(CorruptState, match=v2):
        registry.load("m")


@pytest.mark.parametrize("edit, part", [
    (lambda a: a["form"].update(linear=[0.1]), "artifact.form"),  # weights of the wrong shape
    (lambda a: a.update(target="anything"), "artifact.target"),
    (lambda a: a["skill"].update(spearman=3.0, ci_low=2.0, ci_high=4.0), "artifact.skill"),
])
def test_an_imported_ppm_that_no_route_could_use_is_refused_by_part_and_nothing_is_stored(tmp_path, edit, part):
    from hyper.method.performance_models import artifact_digest
    from hyper_ppm.models import PerformanceModels

    ppm = PerformanceModel("linear", ["a", "b"], QuadraticForm(0.1, np.array([0.25, -0.5])), NO_SKILL,
                           np.array([0.01]), "label_accuracy")
    artifact = ppm.to_json()
    edit(artifact)
    models = PerformanceModels(ModelRegistry(tmp_path), RunStore(tmp_path))
    with pytest.raises(InvalidArgument, match=part):
        models.import_artifact("m", {"artifact": artifact, "sha256": artifact_digest(artifact)})
    assert models.registry.list() == []


def test_an_imported_ppm_says_its_skill_was_not_verified_here(tmp_path):
    from hyper.method.performance_models import artifact_digest
    from hyper_ppm.models import PerformanceModels
    from hyper_router.routing import skill_warnings

    artifact = PerformanceModel("linear", ["a"], QuadraticForm(0.1, np.array([0.2])), Skill(0.9, 0.8, 0.95, 40),
                                np.array([0.01])).to_json()
    models = PerformanceModels(ModelRegistry(tmp_path), RunStore(tmp_path))
    stored = models.import_artifact("m", {"artifact": artifact, "sha256": artifact_digest(artifact)})
    [warning] = skill_warnings(PerformanceModel.from_json(stored), stored["version"])
    assert "imported from" in warning and "not verified" in warning


def test_a_model_fitted_on_another_feature_set_version_is_named_in_a_warning():
    from hyper_router.label_routing import RouteModels
    from hyper_router.routing import feature_set_warnings

    ppm = PerformanceModel("linear", ["a"], QuadraticForm(0.1, np.array([0.2])), Skill(0.9, 0.8, 0.95, 40),
                           np.array([0.01]), feature_set_version="tags-v1")
    again = PerformanceModel.from_json(json.loads(json.dumps(ppm.to_json())))
    assert again.feature_set_version == "tags-v1"
    [warning] = feature_set_warnings(RouteModels(ppm=again, ppm_version="v3-abc"), "tags-v2")
    assert warning.startswith("PPM v3-abc was fitted on features of version tags-v1, and the tagger now "
                              "computes version tags-v2")
    assert feature_set_warnings(RouteModels(ppm=again, ppm_version="v3-abc"), "tags-v1") == []
    unrecorded = PerformanceModel.from_json({k: v for k, v in ppm.to_json().items() if k != "feature_set_version"})
    assert feature_set_warnings(RouteModels(ppm=unrecorded, ppm_version="v1-old"), "tags-v2") == []
