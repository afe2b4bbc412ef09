"""Entry point of the tagger process (the container command, and `hyper up`'s child)."""

from __future__ import annotations

import dataclasses

from hyper.api import serving
from hyper.core.errors import InvalidArgument
from hyper.core.settings import Settings
from hyper.judges.pairwise import Judge, RewardModelJudge
from hyper.method.embeddings import SentenceEmbedder
from hyper.v1 import tagger_pb2, tagger_pb2_grpc
from hyper_tagger.cache import open_cache
from hyper_tagger.descriptive import DescriptiveBackend, prototype_tagger
from hyper_tagger.servicer import TaggerServicer
from hyper_tagger.tagging import CACHED_WIDTH, Tagger, features_version
from hyper_tagger.textual import load_ner
from hyper_tagger.verdicts import VERDICT_WIDTH, CachedVerdicts


def _engine(settings: Settings):
    """The vLLM engine, when a backend asks for one (imported only then: vLLM is optional)."""
    if "vllm" not in (settings.tagging_backend, settings.judge_backend):
        return None
    if not settings.llm_model:
        raise InvalidArgument("HYPER_LLM_MODEL", "a vLLM backend needs a model")
    from hyper_tagger.llm import VLLMEngine

    return VLLMEngine(settings.llm_model, settings.llm_max_model_len)


def endpoint_config(settings: Settings, user: str):
    """The judge's OpenAI-compatible endpoint as configured; `user` names who needs it."""
    from hyper.judges.openai_endpoint import EndpointConfig

    if not settings.judge_url or not settings.judge_model:
        raise InvalidArgument("HYPER_JUDGE_URL", f"{user} needs an endpoint and HYPER_JUDGE_MODEL")
    return EndpointConfig(
        base_url=settings.judge_url, model=settings.judge_model, api_key=settings.judge_api_key,
        concurrency=settings.judge_concurrency, timeout_s=settings.judge_timeout_s,
        max_retries=settings.judge_max_retries, constrained=settings.judge_constrained,
        logprobs=settings.judge_logprobs, price_prompt_per_million=settings.judge_price_prompt_per_million,
        price_completion_per_million=settings.judge_price_completion_per_million)


def endpoint_judge(settings: Settings) -> Judge:
    from hyper.judges.openai_endpoint import EndpointConfig, OpenAICompatibleJudge

    config = endpoint_config(settings, "the openai judge")
    if settings.judge_prompt_file:
        try:
            system_prompt, template = EndpointConfig.read_template(settings.judge_prompt_file)
        except (OSError, ValueError) as error:
            raise InvalidArgument("HYPER_JUDGE_PROMPT_FILE", str(error)) from None
        config = dataclasses.replace(config, system_prompt=system_prompt, template=template)
    return OpenAICompatibleJudge(config)


def descriptive_backend(settings: Settings, embedder: SentenceEmbedder, engine=None) -> DescriptiveBackend:
    """The descriptive tagger `HYPER_TAGGING_BACKEND` names: the tagger's, and bench.tags'."""
    if settings.tagging_backend == "vllm":
        from hyper_tagger.llm import VLLMDescriptiveTagger

        return VLLMDescriptiveTagger(engine or _engine(settings))
    if settings.tagging_backend == "openai":
        from hyper_tagger.endpoint_tags import EndpointDescriptiveTagger

        return EndpointDescriptiveTagger(endpoint_config(settings, "the openai tagging backend"))
    return prototype_tagger(embedder)


def build_tagger(settings: Settings, engine=None) -> Tagger:
    """The tagging core with its models and feature cache: the server's, and the shard Jobs'."""
    embedder = SentenceEmbedder(settings.embedding_model, settings.cache_dir, runtime=settings.embedding_runtime)
    ner = load_ner(settings.ner_model, settings.ner_processes)
    descriptive = descriptive_backend(settings, embedder, engine)
    cache = open_cache(settings.redis_url, settings.cache_dir, features_version(embedder, ner, descriptive),
                       CACHED_WIDTH)
    return Tagger(embedder, ner, descriptive, cache, settings.tagging_chunk_size)


def judge_embedder(settings: Settings, tagging: SentenceEmbedder) -> SentenceEmbedder:
    """The CPU judge's sentence model: it was trained on the transformer's embeddings (`hyper judge
    train`), which the static runtime does not give, so tagging on static vectors does not change
    what the judge reads."""
    if settings.embedding_runtime != "static":
        return tagging
    return SentenceEmbedder(settings.embedding_model, settings.cache_dir, runtime="onnxruntime")


def build(settings: Settings) -> serving.Server:
    engine = _engine(settings)
    tagger = build_tagger(settings, engine)
    judge: Judge
    if settings.judge_backend == "vllm":
        from hyper_tagger.llm import VLLMJudge

        judge = VLLMJudge(engine)
    elif settings.judge_backend == "openai":
        judge = endpoint_judge(settings)
    else:
        judge = RewardModelJudge(judge_embedder(settings, tagger.embedder), settings.judge_file)
    verdicts = CachedVerdicts(judge, lambda namespace: open_cache(settings.redis_url, settings.cache_dir,
                                                                  namespace, VERDICT_WIDTH))
    servicer = TaggerServicer(tagger, verdicts)
    return serving.Server(settings, "tagger", [(
        tagger_pb2_grpc.add_TaggerServiceServicer_to_server, servicer,
        serving.full_name(tagger_pb2, "TaggerService"))])


def main() -> None:
    serving.run("tagger", build)


if __name__ == "__main__":
    main()
