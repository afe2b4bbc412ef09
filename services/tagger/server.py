"""Entry point of the tagger process (the container command, and `hyper up`'s child)."""

from __future__ import annotations

from hyper import serving
from hyper.config import Settings
from hyper.catalogue import feature_set_version
from hyper.embeddings import SentenceEmbedder
from hyper.tagger.cache import open_cache
from hyper.tagger.servicer import TaggerServicer
from hyper.tagger.tagging import Tagger
from hyper.tagger.textual import RAW_DIMENSIONS, load_ner
from hyper.v1 import tagger_pb2, tagger_pb2_grpc


def build(settings: Settings) -> serving.Server:
    embedder = SentenceEmbedder(settings.embedding_model, settings.cache_dir)
    cache = open_cache(settings.redis_url, settings.cache_dir, feature_set_version(),
                       len(RAW_DIMENSIONS))
    servicer = TaggerServicer(Tagger(embedder, cache, load_ner(settings.ner_model)))
    return serving.Server(settings, "tagger", [(
        tagger_pb2_grpc.add_TaggerServiceServicer_to_server, servicer,
        serving.full_name(tagger_pb2, "TaggerService"))])


def main() -> None:
    serving.run("tagger", build)


if __name__ == "__main__":
    main()
