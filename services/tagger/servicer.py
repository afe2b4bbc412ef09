"""TaggerService over gRPC: proto <-> core, validation, nothing else."""

from __future__ import annotations

import dataclasses

from prometheus_client import Counter

from hyper import wire
from hyper.catalogue import CATALOGUE
from hyper.errors import InvalidArgument
from hyper.tagger.judging import Judge
from hyper.tagger.tagging import Tagger
from hyper.tagger.textual import RAW_DIMENSIONS
from hyper.v1 import tagger_pb2, tagger_pb2_grpc

INSTANCES_TAGGED = Counter("hyper_tagger_instances_total", "Instances tagged.")
INSTANCES_ANNOTATED = Counter("hyper_tagger_instances_annotated_total", "Pairs given AI labels.")
CACHE_LOOKUPS = Counter("hyper_tagger_cache_lookups_total", "Feature cache lookups.", ["result"])


class TaggerServicer(tagger_pb2_grpc.TaggerServiceServicer):
    def __init__(self, tagger: Tagger, judge: Judge):
        self.tagger = tagger
        self.judge = judge

    def Tag(self, request, context):
        return self._tag(request.instances)

    def TagStream(self, request_iterator, context):
        return self._tag([m for request in request_iterator for m in request.instances])

    def _tag(self, messages) -> tagger_pb2.TagResponse:
        if not messages:
            raise InvalidArgument("instances", "is empty")
        instances = wire.instances_from_proto(messages)
        result = self.tagger.tag(instances)
        INSTANCES_TAGGED.inc(len(instances))
        CACHE_LOOKUPS.labels("hit").inc(result.cache_hits)
        CACHE_LOOKUPS.labels("miss").inc(result.cache_misses)
        raw = [tagger_pb2.RawFeatures(instance_id=i.id, values=dict(zip(RAW_DIMENSIONS, row, strict=True)))
               for i, row in zip(instances, result.raw.tolist(), strict=True)]
        return tagger_pb2.TagResponse(features=wire.feature_matrix_to_proto(result.features),
                                      raw=raw, cache_hits=result.cache_hits,
                                      cache_misses=result.cache_misses)

    def Annotate(self, request, context):
        if not request.instances:
            raise InvalidArgument("instances", "is empty")
        instances = wire.instances_from_proto(request.instances)
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
