"""TaggerService over gRPC: proto <-> core, validation, nothing else."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
from prometheus_client import Counter

from hyper.api import proto_convert
from hyper.core.catalogue import CATALOGUE, FEATURE_NAMES
from hyper.core.errors import InvalidArgument
from hyper.judges.pairwise import Judge
from hyper.v1 import tagger_pb2, tagger_pb2_grpc
from hyper_tagger.tagging import Tagger
from hyper_tagger.textual import RAW_DIMENSIONS

INSTANCES_TAGGED = Counter("hyper_tagger_instances_total", "Instances tagged.")
INSTANCES_ANNOTATED = Counter("hyper_tagger_instances_annotated_total", "Pairs given AI labels.")
CACHE_LOOKUPS = Counter("hyper_tagger_cache_lookups_total", "Feature cache lookups.", ["result"])


CONTENT_KEY = re.compile(r"^[0-9a-f]{16}$")
HEX_DIGITS = re.compile(r"[0-9a-f]*")


def _content_keys(keys, field: str, offset: int = 0) -> list[str]:
    """The keys, refused by position when one is not a content key (16 hex digits)."""
    keys = list(keys)
    if set(map(len, keys)) <= {16} and HEX_DIGITS.fullmatch("".join(keys)):  # (a million keys at once)
        return keys
    for position, key in enumerate(keys):
        if not CONTENT_KEY.fullmatch(key):
            raise InvalidArgument(f"{field}[{offset + position}]", f"{key[:80]!r} is not a content key (16 hex digits)")
    return keys


class TaggerServicer(tagger_pb2_grpc.TaggerServiceServicer):
    def __init__(self, tagger: Tagger, judge: Judge):
        self.tagger = tagger
        self.judge = judge

    def Tag(self, request, context):
        return self._tag(request.instances, context)

    def TagStream(self, request_iterator, context):
        return self._tag([m for request in request_iterator for m in request.instances], context)

    def _tag(self, messages, context) -> tagger_pb2.TagResponse:
        if not messages:
            raise InvalidArgument("instances", "is empty")
        instances = proto_convert.instances_from_proto(messages)
        result = self.tagger.tag(instances, caller_waiting=context.is_active)
        INSTANCES_TAGGED.inc(len(instances))
        CACHE_LOOKUPS.labels("hit").inc(result.cache_hits)
        CACHE_LOOKUPS.labels("miss").inc(result.cache_misses)
        raw = [tagger_pb2.RawFeatures(instance_id=i.id, values=dict(zip(RAW_DIMENSIONS, row, strict=True)))
               for i, row in zip(instances, result.raw.tolist(), strict=True)]
        return tagger_pb2.TagResponse(features=proto_convert.feature_matrix_to_proto(result.features),
                                      raw=raw, cache_hits=result.cache_hits,
                                      cache_misses=result.cache_misses)

    def MissingKeys(self, request, context):
        _, missing = self.tagger.cache.get_many(_content_keys(request.keys, "keys"))
        return tagger_pb2.MissingKeysResponse(positions=missing)

    def TagCached(self, request_iterator, context):
        keys: list[str] = []
        confidence: list[float] = []
        for request in request_iterator:
            if request.judge_confidence and len(request.judge_confidence) != len(request.keys):
                raise InvalidArgument("judge_confidence", f"has {len(request.judge_confidence)} values for "
                                                          f"{len(request.keys)} keys")
            keys += _content_keys(request.keys, "keys", offset=len(keys))
            confidence += request.judge_confidence or [math.nan] * len(request.keys)
        if not keys:
            raise InvalidArgument("keys", "is empty")
        bits, raw = self.tagger.tag_cached(keys, np.array(confidence))
        INSTANCES_TAGGED.inc(len(keys))
        CACHE_LOOKUPS.labels("hit").inc(len(keys))
        return tagger_pb2.TagCachedResponse(
            n_rows=len(keys), packed_bits=np.packbits(bits).tobytes(), raw=raw.astype(np.float32).tobytes(),
            feature_names=FEATURE_NAMES, raw_names=RAW_DIMENSIONS, feature_set_version=self.tagger.version)

    def Annotate(self, request, context):
        if not request.instances:
            raise InvalidArgument("instances", "is empty")
        instances = proto_convert.instances_from_proto(request.instances)
        annotation = self.judge.annotate(instances)
        INSTANCES_ANNOTATED.inc(len(instances))
        return tagger_pb2.AnnotateResponse(
            judge=self.judge.name, usage=tagger_pb2.JudgeUsage(**dataclasses.asdict(annotation.usage)),
            judgements=[tagger_pb2.Judgement(instance_id=i.id, label=j.label, confidence=j.confidence,
                                             consistency=j.consistency)
                        for i, j in zip(instances, annotation.judgements, strict=True)])

    def GetCatalogue(self, request, context):
        return tagger_pb2.Catalogue(
            feature_set_version=self.tagger.version,
            features=[tagger_pb2.FeatureSpec(name=f.name, group=f.group, dimension=f.dimension,
                                             computed=f.computed) for f in CATALOGUE])
