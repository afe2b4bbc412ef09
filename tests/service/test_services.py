"""The three services as real processes (started by `hyper up`'s code), called over gRPC."""

from __future__ import annotations

import dataclasses
import json
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from harness.models import known_ppm as make_ppm
from hyper.api import proto_convert
from hyper.api.access import local_token
from hyper.api.clients import PPMClient, RouterClient, TaggerClient
from hyper.api.serving import violations_in_status
from hyper.core.catalogue import TEXTUAL_DIMENSIONS
from hyper.data import ingest
from hyper.method.performance_models import PerformanceModel, QuadraticForm
from hyper.v1 import common_pb2, ppm_pb2, router_pb2, tagger_pb2
from hyper_ppm.store import ModelRegistry

pytestmark = pytest.mark.service

SERVICE_NAMES = {"tagger": "hyper.v1.TaggerService", "ppm": "hyper.v1.PPMService",
                 "router": "hyper.v1.RouterService"}


@pytest.fixture(scope="module")
def sample(hh_dataset):
    return hh_dataset.instances[:40]


def inline(instances) -> common_pb2.Dataset:
    return common_pb2.Dataset(inline=common_pb2.InstanceList(
        instances=[proto_convert.instance_to_proto(i) for i in instances]))


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("service", list(SERVICE_NAMES))
def test_every_server_serves_health_and_reflection(channels, service):
    health = health_pb2_grpc.HealthStub(channels[service])
    reply = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAMES[service]))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channels[service])
    [answer] = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for s in answer.list_services_response.service}
    assert {SERVICE_NAMES[service], "grpc.health.v1.Health"} <= names


def test_tagger_returns_one_bin_per_computed_dimension_and_caches(channels, sample):
    stub = TaggerClient(channels["tagger"]).stub
    request = tagger_pb2.TagRequest(instances=[proto_convert.instance_to_proto(i) for i in sample])
    first = stub.Tag(request)
    matrix = proto_convert.feature_matrix_from_proto(first.features)
    assert matrix.bits.shape == (40, 93) and matrix.instance_ids == [i.id for i in sample]
    textual = [j for j, name in enumerate(matrix.feature_names) if name.split("::")[0] in TEXTUAL_DIMENSIONS]
    assert (matrix.bits[:, textual].sum(axis=1) == 9).all()  # one bin of each textual dimension
    safety = [j for j, name in enumerate(matrix.feature_names) if name.startswith("safety_concern::")]
    assert (matrix.bits[:, safety].sum(axis=1) == 1).all()  # and one value of each scalar tag
    raw = {r.instance_id: dict(r.values) for r in first.raw}
    assert all(0.0 <= v["rouge"] <= 1.0 and v["prompt_len"] > 0 for v in raw.values())
    second = stub.Tag(request)
    assert second.cache_hits == 40 and second.cache_misses == 0
    assert second.features.bits == first.features.bits
    catalogue = stub.GetCatalogue(tagger_pb2.GetCatalogueRequest())
    assert len(catalogue.features) == 93
    assert catalogue.feature_set_version == matrix.feature_set_version


def test_streamed_chunks_are_tagged_as_one_dataset(channels, sample):
    client = TaggerClient(channels["tagger"])
    whole = client.stub.Tag(tagger_pb2.TagRequest(instances=[proto_convert.instance_to_proto(i) for i in sample]))
    streamed = client.tag(sample, chunk_size=7)  # percentile ranks span every chunk
    assert streamed.bits.tobytes() == whole.features.bits
    assert streamed.instance_ids == [i.id for i in sample]


def test_tagger_rejects_a_bad_instance_naming_row_and_field(channels, sample):
    bad = proto_convert.instance_to_proto(sample[1])
    bad.prompt = "  "
    request = tagger_pb2.TagRequest(instances=[proto_convert.instance_to_proto(sample[0]), bad])
    error = rpc_error(lambda: TaggerClient(channels["tagger"]).stub.Tag(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "row 2" in error.details() and "prompt" in error.details()


def _run(run_id: str, score: float, counts: list[float]) -> ppm_pb2.Run:
    return ppm_pb2.Run(run_id=run_id, experiment="svc-test", state="succeeded", eval_score=score,
                       count_vector=proto_convert.count_vectors_to_proto(["f0", "f1"], np.array(counts)))


def test_ppm_records_runs_once_fits_and_predicts(channels):
    ppm = PPMClient(channels["ppm"])
    assert ppm.record_run(_run("r0", 0.5, [0, 0])) is True
    assert ppm.record_run(_run("r0", 0.9, [5, 5])) is False  # a retried Job doubles nothing
    for k in range(1, 10):
        ppm.record_run(_run(f"r{k}", 0.5 + 0.01 * k - 0.002 * (k % 3), [k, k % 3]))
    assert len(ppm.list_runs("svc-test")) == 10
    info = ppm.fit("svc", "linear", "svc-test")
    assert info.n_runs == 10 and list(info.feature_names) == ["f0", "f1"]
    artifact = ppm.artifact("svc")
    assert artifact["version"] == info.version == ppm.current_version("svc")
    assert abs(PerformanceModel.from_json(artifact).predict([[4.0, 0]])[0] - 0.54) < 0.01


def test_ppm_validates_runs_and_requests(channels):
    ppm = PPMClient(channels["ppm"])
    failed = ppm_pb2.Run(run_id="bad", experiment="svc-test", state="failed")
    error = rpc_error(lambda: ppm.record_run(failed))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "run.failure_reason" in error.details()
    two_vectors = _run("two", 0.5, [0, 0, 1, 1])
    error = rpc_error(lambda: ppm.record_run(two_vectors))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "run.count_vector" in error.details()
    error = rpc_error(lambda: ppm.fit("svc", "cubic", "svc-test"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("kind")
    error = rpc_error(lambda: ppm.artifact("never-fitted"))
    assert error.code() == grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def known_ppm(services):
    """A linear PPM with known random weights over the whole catalogue, put in the registry."""
    from hyper.core.catalogue import FEATURE_NAMES

    coef = np.random.default_rng(3).normal(0, 1e-3, len(FEATURE_NAMES))
    ppm = make_ppm(list(FEATURE_NAMES), QuadraticForm(0.6, coef))
    version, _ = ModelRegistry(services.ppm_dir).save("known", ppm.to_json())
    return ppm, version


def test_topk_route_equals_an_independent_computation_of_the_gains(channels, sample, known_ppm):
    ppm, version = known_ppm
    response = RouterClient(channels["router"]).route(router_pb2.RouteRequest(
        dataset=inline(sample), budget=router_pb2.Budget(count=10), strategy="topk",
        ppm_model="known"))
    bits = TaggerClient(channels["tagger"]).tag(sample).aligned_to(ppm.feature_names)
    gains = bits @ ppm.form.linear * (1000 / len(sample))  # linear PPM on per-1,000 counts: w . x
    expected = set(sorted(range(len(sample)), key=lambda i: (-gains[i], i))[:10])
    chosen = {i for i, a in enumerate(response.assignments) if a.route == "human"}
    assert chosen == expected
    assert response.n_human == 10 and response.ppm_version == version
    assert np.allclose([a.gain for a in response.assignments], gains)
    assert response.predicted_score == pytest.approx(0.6 + gains[list(expected)].sum())


def test_simulated_route_is_reproducible_and_spends_the_budget(channels, sample, known_ppm):
    request = router_pb2.RouteRequest(dataset=inline(sample), budget=router_pb2.Budget(fraction=0.25),
                                      strategy="simulated", seed=11, n_candidates=50,
                                      ppm_model="known")
    router = RouterClient(channels["router"])
    first, second = router.route(request), router.route(request)
    assert [a.route for a in first.assignments] == [a.route for a in second.assignments]
    assert first.n_human == 10 and first.budget_fraction == 0.25


@pytest.mark.parametrize("spoil, field", [
    (lambda r: r.budget.CopyFrom(router_pb2.Budget(fraction=1.5)), "budget.fraction"),
    (lambda r: r.budget.CopyFrom(router_pb2.Budget()), "budget"),
    (lambda r: setattr(r, "strategy", "psychic"), "strategy"),
    (lambda r: r.dataset.CopyFrom(common_pb2.Dataset()), "dataset"),
])
def test_route_rejects_bad_requests_naming_the_field(channels, sample, known_ppm, spoil, field):
    request = router_pb2.RouteRequest(dataset=inline(sample[:5]), budget=router_pb2.Budget(count=1),
                                      strategy="topk", ppm_model="known")
    spoil(request)
    error = rpc_error(lambda: RouterClient(channels["router"]).route(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(field)


def test_route_reads_a_dataset_by_reference_and_reports_bad_rows(channels, tmp_path, known_ppm):
    path = tmp_path / "pairs.jsonl"
    good = '{"id": "%s", "prompt": "How do I bake bread?", "response_a": "Knead %s.", "response_b": "Buy it."}'
    path.write_text("\n".join([good % ("a", "flour"), '{"id": "b", "prompt": ""}',
                               good % ("c", "dough"), good % ("d", "well")]) + "\n")
    ref = common_pb2.DatasetRef(path=str(path), format="plain")
    request = router_pb2.RouteRequest(dataset=common_pb2.Dataset(ref=ref),
                                      budget=router_pb2.Budget(count=1), ppm_model="known")
    error = rpc_error(lambda: RouterClient(channels["router"]).route(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "row 2" in error.details()
    request.dataset.ref.skip_bad_rows = True
    response = RouterClient(channels["router"]).route(request)
    assert response.n_instances == 3 and response.n_skipped_rows == 1


def test_services_export_prometheus_metrics(services, channels, sample, known_ppm):
    RouterClient(channels["router"]).route(router_pb2.RouteRequest(
        dataset=inline(sample[:5]), budget=router_pb2.Budget(count=1), ppm_model="known"))
    url = f"http://{services.host}:{services.router_metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    assert 'grpc_server_handled_total{grpc_code="OK",grpc_method="Route",grpc_service="hyper.v1.RouterService"}' in text
    assert "hyper_router_predicted_score_bucket" in text


@pytest.fixture(scope="module")
def two_source_ppm(services):
    """A quadratic PPM over human and expert columns, saved in the registry with an ensemble."""
    from hyper.core.catalogue import FEATURE_NAMES

    rng = np.random.default_rng(4)
    names = list(FEATURE_NAMES) + [f"expert|{n}" for n in FEATURE_NAMES]
    d = len(names)

    def form():
        q = rng.normal(0, 1e-7, (d, d))
        return QuadraticForm(0.6, rng.normal(1e-4, 1e-3, d), (q + q.T) / 2)

    ppm = make_ppm(names, form())
    ModelRegistry(services.ppm_dir).save("two-source", ppm.to_json())
    return ppm


@pytest.mark.parametrize("strategy", ["topk", "simulated", "optimal_pos", "optimal_grad", "random",
                                      "uncertainty", "optimize"])
def test_every_strategy_routes_over_grpc_with_an_interval(channels, sample, two_source_ppm, strategy):
    instances = [dataclasses.replace(i, judge_confidence=k / 40) for k, i in enumerate(sample)]
    response = RouterClient(channels["router"]).route(router_pb2.RouteRequest(
        dataset=inline(instances), budget=router_pb2.Budget(fraction=0.25), strategy=strategy,
        seed=3, n_candidates=40, ppm_model="two-source", interval_level=0.8))
    assert response.strategy == strategy and response.n_instances == 40
    assert response.n_human <= 10
    assert response.predicted_lower <= response.predicted_upper and response.interval_level == 0.8
    if strategy == "uncertainty":  # the least confident judge labels go to humans
        assert [a.route for a in response.assignments][:10] == ["human"] * 10


def test_route_spends_a_money_budget_over_two_paid_sources(channels, sample, two_source_ppm):
    instances = [dataclasses.replace(i, costs={"human": 1.0 + k % 3}) for k, i in enumerate(sample)]
    response = RouterClient(channels["router"]).route(router_pb2.RouteRequest(
        dataset=inline(instances), budget=router_pb2.Budget(money=20.0), strategy="optimize",
        ppm_model="two-source", sources=[router_pb2.Source(name="human"),
                                         router_pb2.Source(name="expert", cost=4.0)]))
    spent = sum(a.cost for a in response.assignments)
    assert spent == pytest.approx(response.total_cost) and spent <= 20.0
    assert set(response.n_by_source) <= {"human", "expert", "ai"}
    for assignment, instance in zip(response.assignments, instances, strict=True):
        expected = {"ai": 0.0, "expert": 4.0, "human": instance.costs["human"]}[assignment.route]
        assert assignment.cost == expected


def test_route_returns_a_budget_curve_with_its_best_budget(channels, sample, two_source_ppm):
    response = RouterClient(channels["router"]).route(router_pb2.RouteRequest(
        dataset=inline(sample), budget=router_pb2.Budget(fraction=0.5), strategy="topk",
        ppm_model="two-source", budget_curve=True, curve_points=5))
    fractions = [p.budget_fraction for p in response.budget_curve]
    assert fractions == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [p.n_paid for p in response.budget_curve] == [0, 10, 20, 30, 40]
    best = max(response.budget_curve, key=lambda p: p.predicted)
    assert response.optimal_budget_fraction == best.budget_fraction


def test_route_names_a_source_the_ppm_does_not_know(channels, sample, known_ppm):
    request = router_pb2.RouteRequest(dataset=inline(sample[:5]), budget=router_pb2.Budget(count=1),
                                      ppm_model="known", sources=[router_pb2.Source(name="expert")])
    error = rpc_error(lambda: RouterClient(channels["router"]).route(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("sources[0].name")


def test_a_changed_file_is_read_again_but_an_unchanged_one_is_not(channels, tmp_path, known_ppm):
    path = tmp_path / "pairs.jsonl"
    row = '{"id": "%s", "prompt": "How do I bake bread?", "response_a": "Knead %s.", "response_b": "Buy it."}\n'
    path.write_text(row % ("a", "flour") + row % ("b", "dough"))
    request = router_pb2.RouteRequest(dataset=common_pb2.Dataset(ref=common_pb2.DatasetRef(path=str(path))),
                                      budget=router_pb2.Budget(count=1), ppm_model="known")
    router = RouterClient(channels["router"])
    assert router.route(request).n_instances == 2
    with open(path, "a") as out:
        out.write(row % ("c", "well"))
    assert router.route(request).n_instances == 3


def save_a_judge(services, instances) -> None:
    from hyper.judges.saved_judge import save_judge
    from hyper.judges.training import train_judge
    from hyper.method.embeddings import SentenceEmbedder
    from hyper.method.reward_pairs import encode_pairs
    from hyper.method.run_spec import ProxySpec

    embedder = SentenceEmbedder(services.embedding_model, services.cache_dir)
    phi_a, phi_b = encode_pairs(instances, embedder)
    judge = train_judge(phi_a, phi_b, [i.labels["human"] for i in instances], ProxySpec(),
                        embedder.model_name)
    save_judge(judge, services.judge_file)


def test_annotate_labels_pairs_with_the_saved_judge_and_says_when_there_is_none(channels, services, hh_dataset):
    tagger = TaggerClient(channels["tagger"])
    unlabelled = [dataclasses.replace(i, labels={}) for i in hh_dataset.instances[:30]]
    if not services.judge_file.exists():
        error = rpc_error(lambda: tagger.annotate(unlabelled))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "hyper judge train" in error.details()
        save_a_judge(services, hh_dataset.instances[100:400])
    judgements = tagger.annotate(unlabelled)
    assert [j.instance_id for j in judgements] == [i.id for i in unlabelled]
    assert {j.label for j in judgements} <= {"A", "B"}
    assert all(0.5 <= j.confidence <= 1.0 and j.consistency == 1.0 for j in judgements)


def test_uncertainty_asks_the_tagger_judge_for_missing_confidences_only_when_the_request_allows_it(
        channels, services, hh_dataset, known_ppm):
    if not services.judge_file.exists():
        save_a_judge(services, hh_dataset.instances[100:400])
    unlabelled = [dataclasses.replace(i, labels={}) for i in hh_dataset.instances[:30]]
    request = router_pb2.RouteRequest(dataset=inline(unlabelled), budget=router_pb2.Budget(count=5),
                                      strategy="uncertainty", ppm_model="known")
    with pytest.raises(grpc.RpcError) as refused:  # the judge may cost money: only when asked
        RouterClient(channels["router"]).route(request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations_in_status(refused.value)[0][0] == "allow_judge_calls"
    assert "30 of 30 pairs have no judge confidence" in refused.value.details()
    request.allow_judge_calls = True
    response = RouterClient(channels["router"]).route(request)
    judged = {j.instance_id: j.confidence for j in TaggerClient(channels["tagger"]).annotate(unlabelled)}
    humans = {a.id for a in response.assignments if a.route == "human"}
    assert humans == set(sorted(judged, key=judged.get)[:5])


def test_a_failing_job_records_its_failures_and_a_retry_replaces_them_with_results(
        services, tmp_path, channels, hh_dataset, monkeypatch):
    from hyper.infra.training_jobs import run_local

    # The Jobs run from another directory than `hyper up`'s home: they are given its token.
    monkeypatch.setenv("HYPER_CALLER_TOKEN", local_token(services.home))
    from hyper.method.run_spec import ProxySpec, RunSpec, save_mixes
    from hyper.workflows.training_loop import write_plain_jsonl

    pool = [dataclasses.replace(i, labels={"human": i.labels["human"], "ai": i.labels["human"]})
            for i in hh_dataset.instances[:40]]
    eval_set = hh_dataset.instances[40:70]
    masks = np.array([[True] * 40, [False] * 40])
    save_mixes(tmp_path / "mixes.npz", ["retry-r0", "retry-r1"], [i.id for i in pool], masks,
               np.zeros((2, 2)), ["f0", "f1"])
    spec = RunSpec(experiment="retry-exp", pool=str(tmp_path / "pool.jsonl"),
                   eval=str(tmp_path / "eval.jsonl"), mixes=str(tmp_path / "mixes.npz"),
                   ppm_address=services.address("ppm"), proxy=ProxySpec(steps=2),
                   cache_dir=str(services.cache_dir))
    (tmp_path / "spec.json").write_text(spec.model_dump_json())
    ppm = PPMClient(channels["ppm"])

    assert run_local([tmp_path / "spec.json"], workers=1, log_dir=tmp_path / "logs") == [1]
    runs = ppm.list_runs("retry-exp")
    assert [(r.run_id, r.state) for r in runs] == [("retry-r0", "failed"), ("retry-r1", "failed")]
    assert all("pool.jsonl" in r.failure_reason for r in runs)

    write_plain_jsonl(tmp_path / "pool.jsonl", pool)  # the data arrives; the retry trains
    write_plain_jsonl(tmp_path / "eval.jsonl", eval_set)
    assert run_local([tmp_path / "spec.json"], workers=1, log_dir=tmp_path / "logs") == [0]
    runs = ppm.list_runs("retry-exp")
    assert [(r.run_id, r.state) for r in runs] == [("retry-r0", "succeeded"), ("retry-r1", "succeeded")]

    assert run_local([tmp_path / "spec.json"], workers=1, log_dir=tmp_path / "logs") == [0]
    assert [r.eval_score for r in ppm.list_runs("retry-exp")] == [r.eval_score for r in runs]
    late_failure = ppm_pb2.Run(run_id="retry-r0", experiment="retry-exp", state="failed",
                               failure_reason="a straggler")
    assert not ppm.record_run(late_failure)  # a result is final


def test_a_full_mode_job_fine_tunes_a_decoder_per_mix_and_records_it(services, tmp_path, channels, hh_dataset,
                                                                     monkeypatch):
    from harness.tiny_llama import make_tiny_llama
    from hyper.infra.training_jobs import run_local

    monkeypatch.setenv("HYPER_CALLER_TOKEN", local_token(services.home))  # as in the test above
    from hyper.method.run_spec import FullSpec, RunSpec, save_mixes
    from hyper.workflows.training_loop import write_plain_jsonl

    pool = [dataclasses.replace(i, labels=dict(i.labels, ai="A")) for i in hh_dataset.instances[:16]]
    write_plain_jsonl(tmp_path / "pool.jsonl", pool)
    write_plain_jsonl(tmp_path / "eval.jsonl", hh_dataset.instances[16:24])
    masks = np.array([[True] * 16, [False] * 16])
    save_mixes(tmp_path / "mixes.npz", ["full-r0", "full-r1"], [i.id for i in pool], masks,
               np.zeros((2, 2)), ["f0", "f1"])
    model = make_tiny_llama(tmp_path / "model", [i.prompt[:300] for i in hh_dataset.instances[:100]])
    spec = RunSpec(experiment="full-exp", pool=str(tmp_path / "pool.jsonl"),
                   eval=str(tmp_path / "eval.jsonl"), mixes=str(tmp_path / "mixes.npz"),
                   ppm_address=services.address("ppm"), mode="full",
                   full=FullSpec(model_dir=str(model), batch_size=8, max_length=64, dtype="float32"),
                   cache_dir=str(services.cache_dir))
    (tmp_path / "spec.json").write_text(spec.model_dump_json())
    assert run_local([tmp_path / "spec.json"], workers=1, log_dir=tmp_path / "logs") == [0]
    runs = PPMClient(channels["ppm"]).list_runs("full-exp")
    assert [(r.run_id, r.state) for r in runs] == [("full-r0", "succeeded"), ("full-r1", "succeeded")]
    assert all(0.0 <= r.eval_score <= 1.0 and "category/other" in r.metrics for r in runs)


@pytest.fixture(scope="module")
def unskilled_ppm(services):
    from harness.models import UNSKILLED
    from hyper.core.catalogue import FEATURE_NAMES

    coef = np.random.default_rng(5).normal(0, 1e-3, len(FEATURE_NAMES))
    ModelRegistry(services.ppm_dir).save("unskilled", make_ppm(list(FEATURE_NAMES), QuadraticForm(0.6, coef),
                                                               UNSKILLED).to_json())


def test_a_route_with_an_unskilled_ppm_says_so_first_or_is_refused(channels, services, sample, unskilled_ppm):
    request = router_pb2.RouteRequest(dataset=inline(sample), budget=router_pb2.Budget(count=10),
                                      ppm_model="unskilled")
    response = RouterClient(channels["router"]).route(request)
    [warning] = response.warnings
    assert "no demonstrated skill" in warning
    assert (response.ppm_skill.ci_low, response.ppm_skill.ci_high) == (-0.2, 0.4)
    assert response.predicted_lower < response.predicted_score < response.predicted_upper
    assert not response.HasField("optimal_budget_fraction")  # no curve was asked for
    url = f"http://{services.host}:{services.router_metrics_port}/metrics"
    assert "hyper_router_unskilled_routes_total 1.0" in urllib.request.urlopen(url, timeout=5).read().decode()
    request.require_skill = True
    error = rpc_error(lambda: RouterClient(channels["router"]).route(request))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "no demonstrated skill" in error.details()


def test_a_ppm_fitted_on_other_features_says_so_first(channels, services, sample):
    from hyper.core.catalogue import FEATURE_NAMES

    coef = np.random.default_rng(6).normal(0, 1e-3, len(FEATURE_NAMES))
    older = dataclasses.replace(make_ppm(list(FEATURE_NAMES), QuadraticForm(0.6, coef)),
                                feature_set_version="an-older-tagger")
    ModelRegistry(services.ppm_dir).save("older-tags", older.to_json())
    response = RouterClient(channels["router"]).route(router_pb2.RouteRequest(
        dataset=inline(sample), budget=router_pb2.Budget(count=10), ppm_model="older-tags"))
    current = TaggerClient(channels["tagger"]).feature_set_version()
    assert response.warnings[0].startswith("PPM v1-") and (
        f"fitted on features of version an-older-tagger, and the tagger now computes version {current}"
        in response.warnings[0])
    same = dataclasses.replace(older, feature_set_version=current)
    ModelRegistry(services.ppm_dir).save("older-tags", same.to_json())
    response = RouterClient(channels["router"]).route(router_pb2.RouteRequest(
        dataset=inline(sample), budget=router_pb2.Budget(count=10), ppm_model="older-tags"))
    assert not any("fitted on features of version" in w for w in response.warnings)


def test_route_sends_pairs_without_an_ai_label_to_humans(channels, sample, known_ppm):
    labelled = [dataclasses.replace(i, labels={"judge": "A"}) if k >= 4 else i for k, i in enumerate(sample)]
    response = RouterClient(channels["router"]).route(router_pb2.RouteRequest(
        dataset=inline(labelled), budget=router_pb2.Budget(count=10), ppm_model="known", ai_source="judge"))
    assert response.n_forced_human == 4 and response.n_human == 10
    assert [a.route for a in response.assignments[:4]] == ["human"] * 4
    error = rpc_error(lambda: RouterClient(channels["router"]).route(router_pb2.RouteRequest(
        dataset=inline(labelled), budget=router_pb2.Budget(count=10), ppm_model="known", ai_source="nobody")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("ai_source")


def test_diagnose_tells_whether_routing_can_pay_before_anything_is_spent(channels):
    from harness.local import REPO

    ref = common_pb2.DatasetRef(path=str(REPO / "data" / "llmbar-mtbench.jsonl.gz"))
    response = RouterClient(channels["router"]).diagnose(router_pb2.DiagnoseRequest(
        dataset=common_pb2.Dataset(ref=ref), human_source="human", ai_source="gpt-4", judges=["chatgpt"]))
    assert response.n_pairs == response.n_scored == 200
    agreement = {a.source: a.agreement for a in response.agreement}
    assert agreement["gpt-4"].mean == pytest.approx(0.795) and agreement["human"].mean == 1.0
    assert agreement["gpt-4"].ci_low < 0.795 < agreement["gpt-4"].ci_high
    assert {a.inputs for a in response.error_auc} == {"features", "confidence", "both"}
    assert all(0.0 <= a.auc.ci_low <= a.auc.mean <= a.auc.ci_high <= 1.0 for a in response.error_auc)
    curves = {c.strategy: list(c.label_accuracy) for c in response.expected_accuracy}
    assert curves["random"][0] == pytest.approx(0.795) and curves["oracle"][-1] == 1.0
    assert all(o >= r - 1e-9 for o, r in zip(curves["oracle"], curves["random"], strict=True))
    assert response.verdict and len(response.worst_features) <= 10
    for ai_source in ("gpt-5", "human"):  # absent; the humans themselves
        request = router_pb2.DiagnoseRequest(dataset=common_pb2.Dataset(ref=ref), ai_source=ai_source)
        error = rpc_error(lambda request=request: RouterClient(channels["router"]).diagnose(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("ai_source")
    judged_by_itself = rpc_error(lambda: RouterClient(channels["router"]).diagnose(router_pb2.DiagnoseRequest(
        dataset=common_pb2.Dataset(ref=ref), human_source="human", ai_source="gpt-4", reference=["gpt-4"])))
    assert judged_by_itself.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "right on every one of the 200 pairs" in judged_by_itself.details()


def test_a_file_is_tagged_by_content_key_and_its_route_listed_page_by_page(channels, sample, known_ppm, tmp_path):
    """Reading a file, the router has the tagger compute only what it has not cached, then
    holds the pairs without their text and has them tagged by key: the features equal those
    of the text. The assignments come back a page at a time, and together they are the route."""
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(ingest.plain_record(i)) + "\n" for i in sample[:23]))
    tagger, router = TaggerClient(channels["tagger"]), RouterClient(channels["router"])
    request = router_pb2.RouteRequest(dataset=common_pb2.Dataset(ref=common_pb2.DatasetRef(path=str(path))),
                                      budget=router_pb2.Budget(count=6), ppm_model="known", page_size=5)
    first = router.route(request)
    assert tagger.stub.MissingKeys(tagger_pb2.KeysRequest(keys=[i.content_key() for i in sample[:23]])).positions == []
    by_key = tagger.tag_cached([i.without_text() for i in sample[:23]])
    assert np.array_equal(by_key.features.bits, tagger.tag(sample[:23]).bits)
    assert len(first.assignments) == 5 and first.next_page_token
    pages = [list(first.assignments), *router.assignment_pages(first.route_id, first.next_page_token, 7)]
    assert [len(page) for page in pages] == [5, 7, 7, 4]
    listed = [a for page in pages for a in page]
    whole = router.route(_with_page_size(request, 100))
    assert [(a.id, a.route) for a in listed] == [(a.id, a.route) for a in whole.assignments]
    assert [i.id for i in sample[:23]] == [a.id for a in listed]
    again = router.get_route(first.route_id, 30)
    assert len(again.assignments) == 23 and not again.next_page_token


def _with_page_size(request: router_pb2.RouteRequest, size: int) -> router_pb2.RouteRequest:
    copy = router_pb2.RouteRequest()
    copy.CopyFrom(request)
    copy.page_size = size
    return copy


@pytest.mark.parametrize("call, field", [
    (lambda router, route_id: router.list_assignments(route_id, "x1", 5), "page_token"),
    (lambda router, route_id: router.list_assignments(route_id, "999", 5), "page_token"),
    (lambda router, route_id: router.list_assignments(route_id, "1", 100_001), "page_size"),
    (lambda router, route_id: router.get_route(route_id, 100_001), "page_size"),
])
def test_bad_pages_are_refused_naming_the_field(channels, sample, known_ppm, call, field):
    router = RouterClient(channels["router"])
    route = router.route(router_pb2.RouteRequest(dataset=inline(sample[:4]), budget=router_pb2.Budget(count=1),
                                                 ppm_model="known"))
    error = rpc_error(lambda: call(router, route.route_id))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith(field)


def test_tag_cached_refuses_unknown_and_malformed_keys(channels):
    stub = TaggerClient(channels["tagger"]).stub
    unknown = rpc_error(lambda: stub.TagCached(iter([tagger_pb2.TagCachedRequest(keys=["0123456789abcdef"])])))
    assert unknown.code() == grpc.StatusCode.FAILED_PRECONDITION and "no cached features" in unknown.details()
    malformed = rpc_error(lambda: stub.MissingKeys(tagger_pb2.KeysRequest(keys=["0123456789abcdef", "nope"])))
    assert malformed.code() == grpc.StatusCode.INVALID_ARGUMENT and malformed.details().startswith("keys[1]")
