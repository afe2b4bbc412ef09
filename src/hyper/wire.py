"""Conversions between protobuf messages and the core's types, shared by servicers and clients."""

from __future__ import annotations

import numpy as np

from hyper import ingest
from hyper.errors import InvalidArgument
from hyper.features import FeatureMatrix
from hyper.schema import Dataset, Instance
from hyper.v1 import common_pb2


def instance_to_proto(instance: Instance) -> common_pb2.Instance:
    message = common_pb2.Instance(id=instance.id, prompt=instance.prompt,
                                  response_a=instance.response_a,
                                  response_b=instance.response_b, labels=instance.labels,
                                  costs=instance.costs)
    if instance.judge_confidence is not None:
        message.judge_confidence = instance.judge_confidence
    return message


def _plain_record(message: common_pb2.Instance) -> dict:
    """The message as a plain-format record, unvalidated; an empty id is derived from content."""
    confidence = message.judge_confidence if message.HasField("judge_confidence") else None
    record = ingest.plain_record(Instance(message.id, message.prompt, message.response_a,
                                          message.response_b, dict(message.labels), confidence,
                                          dict(message.costs)))
    if not message.id:
        del record["id"]
    return record


def instances_from_proto(messages, field: str = "instances") -> list[Instance]:
    """Validates inline instances exactly as a file in the plain format would be (row = index+1)."""
    records = [(row, _plain_record(m)) for row, m in enumerate(messages, start=1)]
    return ingest.parse_records(records, "plain", source=field).instances


def dataset_from_proto(message: common_pb2.Dataset) -> Dataset:
    which = message.WhichOneof("source")
    if which == "inline":
        instances = instances_from_proto(message.inline.instances, "dataset.inline")
        return Dataset(instances, source="inline")
    if which == "ref":
        ref = message.ref
        if not ref.path:
            raise InvalidArgument("dataset.ref.path", "is empty")
        return ingest.read_dataset(ref.path, ref.format or "auto", dict(ref.columns) or None,
                                   skip_bad_rows=ref.skip_bad_rows)
    raise InvalidArgument("dataset", "give inline instances or a ref to a file")


def feature_matrix_to_proto(matrix: FeatureMatrix) -> common_pb2.FeatureMatrix:
    return common_pb2.FeatureMatrix(
        feature_names=matrix.feature_names, instance_ids=matrix.instance_ids,
        bits=np.ascontiguousarray(matrix.bits, dtype=np.uint8).tobytes(),
        feature_set_version=matrix.feature_set_version)


def feature_matrix_from_proto(message: common_pb2.FeatureMatrix, field: str = "features") -> FeatureMatrix:
    n, f = len(message.instance_ids), len(message.feature_names)
    if len(message.bits) != n * f:
        raise InvalidArgument(f"{field}.bits", f"has {len(message.bits)} bytes, expected {n}x{f}")
    bits = np.frombuffer(message.bits, dtype=np.uint8).reshape(n, f)
    if bits.size and bits.max() > 1:
        raise InvalidArgument(f"{field}.bits", "values must be 0 or 1")
    return FeatureMatrix(list(message.instance_ids), list(message.feature_names), bits.copy(),
                         message.feature_set_version)


def count_vectors_to_proto(feature_names: list[str], values: np.ndarray) -> common_pb2.CountVectors:
    return common_pb2.CountVectors(feature_names=feature_names,
                                   values=np.asarray(values, dtype=np.float64).ravel().tolist())


def count_vectors_from_proto(message: common_pb2.CountVectors, field: str = "count_vectors"
                             ) -> tuple[list[str], np.ndarray]:
    names = list(message.feature_names)
    if not names:
        raise InvalidArgument(f"{field}.feature_names", "is empty")
    values = np.asarray(message.values, dtype=np.float64)
    if values.size % len(names):
        raise InvalidArgument(f"{field}.values",
                              f"{values.size} values is not a multiple of {len(names)} features")
    if not np.all(np.isfinite(values)):
        raise InvalidArgument(f"{field}.values", "must be finite")
    return names, values.reshape(-1, len(names))
