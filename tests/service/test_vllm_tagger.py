"""The tagger's vLLM path end to end on this CPU: a real vLLM engine (CPU build) serving a
tiny local Llama, structured output, parsing, the gRPC service, and a Route through it.
What the tiny model says is noise; that every reply parses and lands in the value sets is not."""

from __future__ import annotations

import os
import re
import urllib.request

import numpy as np
import pytest

from harness.local import local_settings
from harness.models import known_ppm
from harness.tiny_llama import make_tiny_llama
from hyper.api import proto_convert
from hyper.api.clients import RouterClient, TaggerClient
from hyper.core.catalogue import DESCRIPTIVE_VALUES, FEATURE_NAMES
from hyper.method.embeddings import SentenceEmbedder
from hyper.method.performance_models import QuadraticForm
from hyper.v1 import common_pb2, router_pb2, tagger_pb2
from hyper_ppm.store import ModelRegistry
from hyper_tagger.descriptive import PrototypeTagger
from hyper_tagger.tagging import features_version
from hyper_tagger.textual import load_ner

pytestmark = [pytest.mark.vllm, pytest.mark.service]

VLLM_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1",
            "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


@pytest.fixture(scope="module")
def vllm_services(tmp_path_factory, hh_dataset):
    from hyper.infra.local_processes import LocalProcesses

    home = tmp_path_factory.mktemp("vllm-home")
    model = make_tiny_llama(home / "tiny-llama", [i.prompt[:500] for i in hh_dataset.instances[:300]])
    settings = local_settings(home).model_copy(update={
        "tagging_backend": "vllm", "judge_backend": "vllm", "llm_model": str(model)})
    saved = dict(os.environ)
    os.environ.update(VLLM_ENV, VLLM_CACHE_ROOT=str(home / "vllm-cache"))
    processes = LocalProcesses(settings)
    try:
        processes.up(timeout=300)
        yield settings
    finally:
        processes.down()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def tagger(vllm_services):
    return TaggerClient.connect(vllm_services)


def columns(prefix: str) -> list[int]:
    return [j for j, name in enumerate(FEATURE_NAMES) if name.startswith(prefix)]


def metric(settings, name: str) -> float:
    text = urllib.request.urlopen(f"http://{settings.host}:{settings.tagger_metrics_port}/metrics",
                                  timeout=5).read().decode()
    return float(re.search(rf"^{name} (\S+)$", text, re.MULTILINE).group(1))


def test_every_llm_reply_parses_into_the_value_sets(vllm_services, tagger, hh_dataset):
    bits = tagger.tag(hh_dataset.instances[:12]).bits
    for dimension in ("expertise_level", "open_endedness", "safety_concern", "complexity_of_intents"):
        assert len(columns(f"{dimension}::")) == len(DESCRIPTIVE_VALUES[dimension])
        assert (bits[:, columns(f"{dimension}::")].sum(axis=1) == 1).all(), dimension
    subjects = bits[:, columns("subject_of_expertise::")].sum(axis=1)
    assert ((subjects >= 1) & (subjects <= 3)).all()
    assert metric(vllm_services, "hyper_tagger_llm_unparsed_replies_total") == 0.0
    assert metric(vllm_services, 'hyper_tagger_llm_tokens_total{kind="generated"}') > 0


def test_the_llm_backend_has_its_own_feature_set_version(tagger, vllm_services):
    reply = tagger.stub.GetCatalogue(tagger_pb2.GetCatalogueRequest())
    settings = vllm_services
    embedder = SentenceEmbedder(settings.embedding_model, settings.cache_dir, runtime=settings.embedding_runtime)
    cpu = features_version(embedder, load_ner(settings.ner_model), PrototypeTagger)
    assert reply.feature_set_version != cpu


def test_the_pairwise_judge_labels_pairs_in_both_orders(tagger, hh_dataset):
    judgements = tagger.annotate(hh_dataset.instances[:4])
    assert len(judgements) == 4
    for judgement in judgements:
        assert judgement.label in ("A", "B", "tie")
        assert 0.5 <= judgement.confidence <= 1.0 and judgement.consistency in (0.0, 0.5, 1.0)


def test_route_runs_through_the_llm_tagger(vllm_services, hh_dataset):
    rng = np.random.default_rng(0)
    ppm = known_ppm(list(FEATURE_NAMES), QuadraticForm(0.6, rng.normal(0, 1e-3, len(FEATURE_NAMES))))
    ModelRegistry(vllm_services.ppm_dir).save("vllm-test", ppm.to_json())
    dataset = common_pb2.Dataset(inline=common_pb2.InstanceList(
        instances=[proto_convert.instance_to_proto(i) for i in hh_dataset.instances[20:32]]))
    router = RouterClient.connect(vllm_services)
    response = router.route(router_pb2.RouteRequest(dataset=dataset, budget=router_pb2.Budget(count=4),
                                                    strategy="optimize", ppm_model="vllm-test"))
    assert response.n_human == 4 and response.n_instances == 12
