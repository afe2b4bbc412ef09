"""Entry point of the tagger process (the container command, and `hyper up`'s child)."""

from __future__ import annotations

from hyper import serving
from hyper.config import Settings
from hyper.catalogue import feature_set_version
from hyper.embeddings import SentenceEmbedder
from hyper.tagger.cache import open_cache
from hyper.tagger.servicer import TaggerServicer
from hyper.tagger.descriptive import ZeroShotEmbeddingTagger
from hyper.tagger.judging import RewardModelJudge
from hyper.tagger.tagging import CACHED_WIDTH, Tagger
from hyper.tagger.textual import load_ner
from hyper.v1 import tagger_pb2, tagger_pb2_grpc


def build(settings: Settings) -> serving.Server:
    embedder = SentenceEmbedder(settings.embedding_model, settings.cache_dir)
    descriptive = ZeroShotEmbeddingTagger(embedder)
    cache = open_cache(settings.redis_url, settings.cache_dir,
                       feature_set_version(descriptive.name), CACHED_WIDTH)
    servicer = TaggerServicer(Tagger(embedder, load_ner(settings.ner_model), descriptive, cache),
                              RewardModelJudge(embedder, settings.judge_file))
    return serving.Server(settings, "tagger", [(
        tagger_pb2_grpc.add_TaggerServiceServicer_to_server, servicer,
        serving.full_name(tagger_pb2, "TaggerService"))])


def main() -> None:
    serving.run("tagger", build)


if __name__ == "__main__":
    main()
