"""The labelled history a FitErrorModel request carries, as the error model's core types."""

from __future__ import annotations

import numpy as np

from hyper.api.proto_convert import feature_matrix_from_proto
from hyper.core.errors import InvalidArgument
from hyper.core.features import FeatureMatrix
from hyper.method.error_models import History, Inputs
from hyper.v1 import ppm_pb2

PER_PAIR = ("judge_confidence", "judge_correct", "human_correct", "scored", "forced")


def history_from_proto(request: ppm_pb2.FitErrorModelRequest) -> tuple[FeatureMatrix, History]:
    """The labelled history of a FitErrorModelRequest; every per-pair field one value a pair."""
    features = feature_matrix_from_proto(request.features)
    n = features.n_instances
    columns = {}
    for name in PER_PAIR:
        values = np.asarray(getattr(request, name))
        if len(values) != n:
            raise InvalidArgument(name, f"has {len(values)} values for {n} pairs")
        columns[name] = values
    if not n:
        raise InvalidArgument("features", "has no pairs")
    inputs = Inputs(features.bits, columns["judge_confidence"].astype(np.float64))
    return features, History(inputs, columns["judge_correct"].astype(bool), columns["human_correct"].astype(bool),
                             columns["scored"].astype(bool), columns["forced"].astype(bool),
                             request.human_is_reference)
