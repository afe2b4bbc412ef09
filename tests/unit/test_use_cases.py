"""The services' use cases in process, with fakes for their peers (as KServe tests its
DataPlane with a dummy model): Router.route without a tagger or ppm server, and the ppm core
recording runs and fitting PPMs on its stores. The same code runs behind gRPC in
tests/service."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest

from harness.models import UNSKILLED, known_ppm
from hyper.api.access import CALLER
from hyper.api.clients import Tagged
from hyper.api.messages import ROUTE_ID, Budget, RouteOptions
from hyper.core.errors import CallerGone, InvalidArgument, NotFound, QuotaExceeded
from hyper.core.features import FeatureMatrix
from hyper.core.lru_memo import Memo
from hyper.core.schema import Dataset, DatasetRef, Instance
from hyper.judges.pairwise import Judgement
from hyper.method import label_quality
from hyper.method.error_models import History, Inputs
from hyper.method.performance_models import PerformanceModel, QuadraticForm
from hyper_ppm.models import PerformanceModels
from hyper_ppm.store import ModelRegistry, RunStore
from hyper_router.dataplane import RouterDataPlane
from hyper_router.quota import Quotas
from hyper_router.routing import Router, SkillNotDemonstrated
from hyper_router.store import FileRouteStore

FEATURES = ["f0", "f1", "f2", "f3"]


class FakeTagger:
    """Features from a fixed table keyed by instance id; counts how often it is asked."""

    def __init__(self, bits: dict[str, list[int]]):
        self.bits = bits
        self.calls = 0
        self.seen: list[list[Instance]] = []
        self.looked_up = 0

    def feature_set_version(self) -> str:
        return "fake-v1"

    def tag_with_raw(self, instances: list[Instance]) -> Tagged:
        self.calls += 1
        self.seen.append(instances)
        rows = np.array([self.bits[i.id] for i in instances], dtype=np.uint8)
        return Tagged(FeatureMatrix([i.id for i in instances], FEATURES, rows, "fake-v1"),
                      {"prompt_len": np.full(len(instances), 10.0)})

    def missing_keys(self, keys: list[str]) -> list[int]:
        self.looked_up += len(keys)
        return []

    def annotate_with_usage(self, instances: list[Instance]) -> SimpleNamespace:
        raise AssertionError("no strategy here needs the judge")


class FakePPM:
    """ppm holding artifacts by name ("default" is the PPM given), each at version v1-fake."""

    def __init__(self, model: PerformanceModel | None = None, **artifacts: dict):
        self.artifacts = ({"default": model.to_json()} if model else {}) | artifacts
        self.fetched = 0

    @property
    def artifact_json(self) -> dict:
        return self.artifacts["default"]

    def current_version(self, model: str = "") -> str:
        if (model or "default") not in self.artifacts:
            raise NotFound(f"no model named {model!r} has been fitted yet")
        return "v1-fake"

    def artifact(self, model: str = "", version: str = "") -> dict:
        self.current_version(model)
        self.fetched += 1
        return self.artifacts[model or "default"]


def instances(n: int) -> list[Instance]:
    return [Instance(f"i{k}", f"prompt {k}", "a", "b") for k in range(n)]


@pytest.fixture
def router_and_fakes():
    rng = np.random.default_rng(0)
    bits = {f"i{k}": rng.integers(0, 2, len(FEATURES)).tolist() for k in range(20)}
    weights = np.array([0.03, -0.01, 0.02, 0.005])
    tagger = FakeTagger(bits)
    ppm = FakePPM(known_ppm(FEATURES, QuadraticForm(0.5, weights)))
    return Router(tagger, ppm), tagger, ppm, bits, weights


def test_route_takes_the_largest_gains_and_predicts_their_sum(router_and_fakes):
    router, tagger, ppm, bits, weights = router_and_fakes
    dataset = Dataset(instances(20))
    route = router.route(dataset, Budget(count=5), RouteOptions(strategy="topk"))
    result = route.result
    per_thousand = 1000 / 20  # count vectors count per 1,000 pairs of the routed dataset
    gains = np.array([bits[f"i{k}"] for k in range(20)]) @ weights * per_thousand
    expected = sorted(range(20), key=lambda k: (-gains[k], k))[:5]
    assert [k for k, to in enumerate(route.assignments.routes) if to == "human"] == sorted(expected)
    assert result.predicted_score == pytest.approx(0.5 + gains[expected].sum())
    assert result.ppm_version == "v1-fake" and result.budget_fraction == 0.25
    assert result.predicted_lower < result.predicted_score < result.predicted_upper and result.warnings == []


def test_the_data_plane_persists_a_route_and_reads_it_back_a_page_at_a_time(router_and_fakes, tmp_path):
    router = router_and_fakes[0]
    plane = RouterDataPlane(router, FileRouteStore(tmp_path))
    answered = plane.route(Dataset(instances(20)), Budget(count=5), RouteOptions(), page_size=8)
    assert ROUTE_ID.fullmatch(answered.route_id) and answered.dataset_ref is None
    assert len(answered.assignments) == 8 and answered.next_page_token
    rest, token, total = plane.list_assignments(answered.route_id, answered.next_page_token, 100)
    assert total == 20 and token == "" and len(answered.assignments + rest) == 20
    again = plane.get_route(answered.route_id, 100)
    assert again == answered.model_copy(update={"assignments": answered.assignments + rest, "next_page_token": ""})


def test_a_route_whose_caller_has_gone_is_not_saved(router_and_fakes, tmp_path):
    plane = RouterDataPlane(router_and_fakes[0], FileRouteStore(tmp_path))
    with pytest.raises(CallerGone):
        plane.route(Dataset(instances(20)), Budget(count=5), RouteOptions(), page_size=8, caller_waiting=lambda: False)
    saved = tmp_path / "routes"
    assert not saved.exists() or not any(saved.iterdir())
    answered = plane.route(Dataset(instances(20)), Budget(count=5), RouteOptions(), page_size=8)
    plane.delete_route(answered.route_id)
    with pytest.raises(NotFound):
        plane.get_route(answered.route_id, 8)


def test_a_ppm_without_skill_routes_with_a_warning_or_not_at_all(router_and_fakes):
    router, _, ppm, _, _ = router_and_fakes
    ppm.artifact_json["skill"] = UNSKILLED.to_json()
    route = router.route(Dataset(instances(20)), Budget(count=5), RouteOptions())
    [warning] = route.result.warnings
    assert "no demonstrated skill" in warning and "[-0.20, 0.40]" in warning
    with pytest.raises(SkillNotDemonstrated):
        router.route(Dataset(instances(20)), Budget(count=5), RouteOptions(require_skill=True))


def test_pairs_without_an_ai_label_go_to_humans_within_the_budget(router_and_fakes):
    router = router_and_fakes[0]
    labelled = [dataclasses.replace(i, labels={"judge": "A", "judge_swapped": "B" if k % 2 else "A"})
                if k >= 3 else i for k, i in enumerate(instances(20))]
    route = router.route(Dataset(labelled), Budget(count=5), RouteOptions(ai_source="judge"))
    assert route.result.n_forced_human == 3 and route.assignments.routes[:3] == ["human"] * 3
    assert route.assignments.routes.count("human") == 5
    with pytest.raises(InvalidArgument) as caught:
        router.route(Dataset(labelled), Budget(count=2), RouteOptions(ai_source="judge"))
    assert caught.value.field == "budget"
    confidences = [i.judge_confidence for i in router.tagger.seen[-1]]
    assert confidences[:3] == [None] * 3 and set(confidences[3:]) == {0.0, 1.0}  # order consistency


def test_route_asks_its_peers_once_per_dataset_and_model_version(router_and_fakes):
    router, tagger, ppm, _, _ = router_and_fakes
    dataset = Dataset(instances(20))
    for strategy in ("topk", "optimize", "random"):
        router.route(dataset, Budget(fraction=0.5), RouteOptions(strategy=strategy), "key")
    assert tagger.calls == 1 and ppm.fetched == 1


def test_route_rejects_what_depends_on_the_dataset_naming_the_field(router_and_fakes):
    router = router_and_fakes[0]
    with pytest.raises(InvalidArgument) as caught:
        router.route(Dataset(instances(20)), Budget(count=21), RouteOptions())
    assert caught.value.field == "budget.count"
    with pytest.raises(InvalidArgument) as caught:
        router.route(Dataset([]), Budget(count=0), RouteOptions())
    assert caught.value.field == "dataset"


def test_a_dataset_file_is_read_again_only_when_it_changes(router_and_fakes, tmp_path):
    router = router_and_fakes[0]
    path = tmp_path / "pairs.jsonl"
    row = '{"id": "i%d", "prompt": "p", "response_a": "a%d", "response_b": "b"}\n'
    path.write_text(row % (0, 0) + row % (1, 1))
    ref = DatasetRef(str(path), "plain")
    first, key = router.load_dataset(ref)
    again, same_key = router.load_dataset(ref)
    assert again is first and same_key == key
    with open(path, "a") as out:
        out.write(row % (2, 2))
    grown, new_key = router.load_dataset(ref)
    assert len(grown) == 3 and new_key != key


def test_a_dataset_over_the_router_s_ceiling_is_refused_as_it_is_read_or_sent(router_and_fakes, tmp_path):
    router, tagger = router_and_fakes[:2]
    router.max_pairs = 20
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(f'{{"id": "i{k}", "prompt": "p", "response_a": "a{k}", "response_b": "b"}}\n'
                            for k in range(21)))
    plane = RouterDataPlane(router, FileRouteStore(tmp_path / "routes"))
    for source in (DatasetRef(str(path), "plain"), Dataset(instances(21))):
        with pytest.raises(InvalidArgument) as refused:
            plane.route(source, Budget(count=5), RouteOptions(strategy="random"), 10)
        assert refused.value.field == "dataset" and "more than 20 pairs" in str(refused.value)
    assert tagger.calls == 0 and not (tmp_path / "routes").exists()  # nothing tagged, nothing saved
    assert plane.route(Dataset(instances(20)), Budget(count=5), RouteOptions(strategy="random"), 10).route_id


def test_a_memo_bounded_in_bytes_keeps_the_latest_that_fit_and_never_a_value_larger_than_all():
    memo: Memo[np.ndarray] = Memo(8, max_bytes=3 * 800_200)
    for k in range(5):
        memo.get_or_compute(k, lambda: np.zeros(100_000))  # 800 KB each
    assert memo.held_bytes <= memo.max_bytes
    computed = []
    assert [memo.get_or_compute(k, lambda: computed.append(1)) is not None for k in (2, 3, 4)] == [True] * 3
    assert computed == []  # the three latest were kept
    memo.get_or_compute("large", lambda: np.zeros(10**6))
    memo.get_or_compute("large", lambda: computed.append(1) or np.zeros(1))
    assert computed == [1] and memo.held_bytes <= memo.max_bytes  # too large alone: returned, not kept


def run(run_id: str, score: float, counts: list[float], state: str = "succeeded") -> dict:
    return {"run_id": run_id, "experiment": "exp", "state": state, "eval_score": score,
            "count_vector": {"feature_names": ["f0", "f1"], "values": counts}}


def test_the_ppm_core_records_each_run_once_and_fits_versions(tmp_path):
    models = PerformanceModels(ModelRegistry(tmp_path), RunStore(tmp_path))
    assert models.record_run(run("r0", 0.5, [0, 0])) is True
    assert models.record_run(run("r0", 0.9, [5, 5])) is False  # a retried Job doubles nothing
    for k in range(1, 10):
        models.record_run(run(f"r{k}", 0.5 + 0.01 * k, [k, k % 3]))
    models.record_run(run("r10", 0.0, [0, 0], "failed") | {"failure_reason": "out of memory"})
    first = models.fit("m", "linear", ["exp"])
    second = models.fit("m", "linear", ["exp"])
    assert first["version"].startswith("v1-") and second["version"].startswith("v2-")
    assert len(first["training_runs"]) == 10  # the failed run is not learned from
    assert models.artifact("m")["version"] == second["version"]
    fitted = PerformanceModel.from_json(models.artifact("m", first["version"]))
    assert fitted.predict([[4, 1]])[0] == pytest.approx(0.54, abs=0.01)
    assert fitted.skill.demonstrated and fitted.target == "rm_accuracy"  # runs without a score name


def test_the_ppm_core_names_what_is_wrong(tmp_path):
    models = PerformanceModels(ModelRegistry(tmp_path), RunStore(tmp_path))
    with pytest.raises(InvalidArgument) as caught:
        models.record_run(run("bad", 0.0, [0, 0], "failed"))
    assert caught.value.field == "run.failure_reason"
    for score, metrics, field in ((float("nan"), {}, "run.eval_score"), ("NaN", {}, "run.eval_score"),
                                  (0.5, {"acc": "Infinity"}, "run.metrics['acc']")):  # floats, or the proto's JSON
        with pytest.raises(InvalidArgument) as caught:  # JSON readers would get null for a number
            models.record_run(run("nan", score, [0, 0]) | {"metrics": metrics})
        assert caught.value.field == field
    assert models.list_runs() == []
    with pytest.raises(InvalidArgument) as caught:
        models.fit("m", "linear", "exp")
    assert caught.value.field == "experiment"
    with pytest.raises(NotFound):
        models.artifact("never-fitted")


def labelled_instances(n: int, rng: np.random.Generator) -> tuple[list[Instance], dict[str, list[int]]]:
    """Pairs whose judge is wrong more often where f0 is set and its second judge disagrees."""
    bits = {f"j{k}": rng.integers(0, 2, len(FEATURES)).tolist() for k in range(n)}
    pairs = []
    for k in range(n):
        wrong = rng.random() < (0.5 if bits[f"j{k}"][0] else 0.1)
        judge, other = ("B", "B") if wrong else ("A", "A" if rng.random() < 0.8 else "B")
        pairs.append(Instance(f"j{k}", f"prompt {k}", "a", "b", {"human": "A", "judge": judge, "other": other}))
    return pairs, bits


def error_model_artifact(pairs: list[Instance], bits: dict[str, list[int]]) -> dict:
    history = History(Inputs(np.array([bits[i.id] for i in pairs]), np.array(
        [1.0 if i.labels["other"] == i.labels["judge"] else 0.0 for i in pairs])),
        np.array([i.labels["judge"] == "A" for i in pairs]), np.ones(len(pairs), dtype=bool),
        np.ones(len(pairs), dtype=bool), np.zeros(len(pairs), dtype=bool), human_is_reference=True)
    return label_quality.fit(history, FEATURES, "judge", ["other"], seed=0).to_json()


@pytest.fixture(scope="module")
def labelled_world():
    rng = np.random.default_rng(3)
    history, history_bits = labelled_instances(400, rng)
    batch, batch_bits = labelled_instances(100, rng)
    return error_model_artifact(history, history_bits), batch, history_bits | batch_bits


def test_auto_routes_by_the_error_model_and_predicts_a_label_accuracy_inside_zero_and_one(labelled_world):
    artifact, batch, bits = labelled_world
    router = Router(FakeTagger(bits), FakePPM(**{"default.errors": artifact}))
    options = RouteOptions(strategy="auto", ai_source="judge", judges=["other"], budget_curve=True)
    result = router.route(Dataset(batch), Budget(fraction=0.25), options).result
    assert result.strategy_chosen in ("error_model", "uncertainty") and "cross-fitting" in result.strategy_reason
    assert result.routing_gain is not None and result.routing_gain.ci_low > 0  # f0 and disagreement carry errors
    assert result.ppm_target == "label_accuracy" and result.ppm_skill is None and result.error_model == "default.errors"
    assert 0.0 <= result.predicted_lower <= result.predicted_score <= result.predicted_upper <= 1.0
    assert all(0.0 <= p.lower <= p.predicted <= p.upper <= 1.0 for p in result.budget_curve)


def test_without_any_model_uncertainty_routes_and_auto_starts_cold_saying_so(labelled_world):
    _, batch, bits = labelled_world
    router = Router(FakeTagger(bits), FakePPM())
    options = RouteOptions(ai_source="judge", judges=["other"])
    for strategy in ("uncertainty", "auto"):
        result = router.route(Dataset(batch), Budget(fraction=0.2), options.model_copy(update={"strategy": strategy}))
        assert result.result.n_human == 20 and result.result.predicted_score is None
    assert result.result.strategy_chosen == "cold_start" and "random sample" in result.result.strategy_reason
    with pytest.raises(NotFound, match="hyper train"):
        router.route(Dataset(batch), Budget(fraction=0.2), options.model_copy(update={"strategy": "error_model"}))


def test_the_guaranteed_mode_names_the_budget_it_needs(labelled_world):
    artifact, batch, bits = labelled_world
    router = Router(FakeTagger(bits), FakePPM(**{"default.errors": artifact}))
    options = RouteOptions(strategy="auto", ai_source="judge", judges=["other"], target_accuracy=0.9, risk=0.1)
    result = router.route(Dataset(batch), None, options).result
    assert result.guarantee is not None and result.guarantee.reachable and "exchangeable" in result.guarantee.assumption
    assert result.required_budget_fraction == pytest.approx(result.n_human / 100)
    assert 0 < result.required_budget_fraction < 1


def test_an_error_model_of_another_judge_warns_and_widens_its_interval(labelled_world):
    artifact, batch, bits = labelled_world
    router = Router(FakeTagger(bits), FakePPM(**{"default.errors": artifact}))
    same = router.route(Dataset(batch), Budget(fraction=0.25), RouteOptions(strategy="error_model", ai_source="judge",
                                                                            judges=["other"])).result
    relabelled = [dataclasses.replace(i, labels=i.labels | {"judge2": i.labels["judge"]}) for i in batch]
    other = router.route(Dataset(relabelled), Budget(fraction=0.25),
                         RouteOptions(strategy="error_model", ai_source="judge2", judges=["other"])).result
    assert any("learnt the errors of label_judge, not label_judge2" in w for w in other.warnings)
    assert other.predicted_upper - other.predicted_lower > 2 * (same.predicted_upper - same.predicted_lower)


class CountingJudge(FakeTagger):
    """A tagger whose judge labels every pair it is asked, counting them, at 0.01 a pair."""

    def __init__(self, bits):
        super().__init__(bits)
        self.judged = 0
        self.lock = threading.Lock()

    def annotate_with_usage(self, instances: list[Instance]) -> SimpleNamespace:
        with self.lock:
            self.judged += len(instances)
        return SimpleNamespace(judgements=[Judgement("A", 0.5 + k / (2 * len(instances)), 1.0)
                                           for k in range(len(instances))],
                               usage=SimpleNamespace(cost=0.01 * len(instances)))


def routes_as(caller: str, route: Callable[[], object], refusal: str) -> str:
    CALLER.set(caller)
    try:
        route()
        return "routed"
    except QuotaExceeded as refused:
        assert refusal in str(refused)
        return "refused"


def judged_routes(router_and_fakes, quotas: Quotas, refusal: str) -> tuple[CountingJudge, Callable[[str], str]]:
    """A router whose uncertainty Routes of 20 pairs all go to a counting judge, under `quotas`."""
    _, _, ppm, bits, _ = router_and_fakes
    judge = CountingJudge(bits)
    router = Router(judge, ppm, quotas=quotas)
    options = RouteOptions(strategy="uncertainty", allow_judge_calls=True)
    return judge, lambda caller: routes_as(
        caller, lambda: router.route(Dataset(instances(20)), Budget(count=5), options), refusal)


def test_a_caller_s_judge_quota_holds_under_twenty_concurrent_routes(router_and_fakes):
    judge, route_as = judged_routes(router_and_fakes, Quotas.of(judge_pairs_per_hour=100),
                                    "100 pairs labelled by the judge an hour")
    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(route_as, ["team-a"] * 20))
    assert outcomes.count("routed") == 5 and judge.judged == 100  # 5 x 20 pairs: the quota, never more
    assert route_as("team-b") == "routed" and judge.judged == 120  # a quota per caller


def test_the_judge_s_money_is_charged_after_its_calls_and_a_spent_caller_is_refused(router_and_fakes):
    judge, route_as = judged_routes(router_and_fakes, Quotas.of(judge_money_per_hour=0.5),
                                    "0.5 of the judge's cost")
    # 0.2 a Route: the third passes 0.5 by its own cost (known only afterwards), the fourth is refused
    assert [route_as("team-a") for _ in range(4)] == ["routed", "routed", "routed", "refused"]
    assert judge.judged == 60 and route_as("team-b") == "routed"


def test_a_caller_s_route_quota_holds_under_twenty_concurrent_callers(router_and_fakes, tmp_path):
    router, _, _, _, _ = router_and_fakes
    router.quotas = Quotas.of(routes_per_hour=5)
    plane = RouterDataPlane(router, FileRouteStore(tmp_path))

    def route_as(caller: str) -> str:
        return routes_as(caller, lambda: plane.route(Dataset(instances(20)), Budget(count=5),
                                                     RouteOptions(strategy="random"), 10),
                         "5 Routes and Diagnoses an hour")

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(route_as, ["team-a"] * 20))
    assert outcomes.count("routed") == 5 and len(list(tmp_path.rglob("*.json"))) >= 5
    assert route_as("team-b") == "routed"
