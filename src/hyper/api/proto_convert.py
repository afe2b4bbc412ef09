"""Conversions between protobuf messages and the core's types, shared by servicers and clients."""

from __future__ import annotations

import numpy as np
from google.protobuf import json_format
from google.protobuf.message import Message

from hyper.api.messages import (
    Assignment,
    Budget,
    DiagnoseRequest,
    Diagnosis,
    RouteOptions,
    RouteRequest,
    RouteResult,
    validated,
)
from hyper.core.errors import InvalidArgument
from hyper.core.features import FeatureMatrix
from hyper.core.schema import Dataset, DatasetRef, Instance
from hyper.data import ingest
from hyper.data.label_sources import LabelRoles
from hyper.v1 import common_pb2, router_pb2


def message_to_dict(message: Message, with_defaults: bool = False) -> dict:
    """A message as JSON-ready data under its proto field names; without defaults, only the
    fields that were set (proto3 scalars at their zero value count as unset)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=with_defaults)


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


def dataset_ref_from_proto(ref: common_pb2.DatasetRef) -> DatasetRef:
    return DatasetRef(ref.path, ref.format or "auto", tuple(sorted(ref.columns.items())),
                      ref.skip_bad_rows)


def dataset_source_from_proto(message: common_pb2.Dataset) -> DatasetRef | Dataset:
    """A file the server reads itself, or the inline instances, validated."""
    if message.WhichOneof("source") == "ref":
        return dataset_ref_from_proto(message.ref)
    if message.WhichOneof("source") == "inline":
        return Dataset(instances_from_proto(message.inline.instances, "dataset.inline"), source="inline")
    raise InvalidArgument("dataset", "give inline instances or a ref to a file")


def label_roles_from_proto(request: router_pb2.DiagnoseRequest) -> LabelRoles:
    if not request.ai_source:
        raise InvalidArgument("ai_source", "is required: the label source of the AI judge")
    return LabelRoles(request.human_source or "human", request.ai_source, tuple(request.reference),
                      tuple(request.judges))


def budget_from_proto(request: router_pb2.RouteRequest) -> Budget | None:
    """The request's budget; none in the guaranteed mode (a target accuracy instead), never both."""
    if request.HasField("budget") == request.HasField("target_accuracy"):
        raise InvalidArgument("budget", "give a budget, or a target_accuracy (the guaranteed mode), not both")
    return validated(Budget, message_to_dict(request.budget), "budget") if request.HasField("budget") else None


def route_options_from_proto(request: router_pb2.RouteRequest) -> RouteOptions:
    """The options a request sets; an unset field (a proto3 zero value) takes the default."""
    options = message_to_dict(request)
    for name in ("dataset", "budget", "page_size"):  # what to route, and how much of it to answer with
        options.pop(name, None)
    return validated(RouteOptions, options)


def route_request_to_proto(request: RouteRequest) -> router_pb2.RouteRequest:
    return json_format.ParseDict(request.model_dump(mode="json", exclude_none=True),
                                 router_pb2.RouteRequest())


def route_result_from_proto(response: router_pb2.RouteResponse) -> RouteResult:
    """The route, its page of assignments built directly (a page holds up to 100,000)."""
    summary = router_pb2.RouteResponse()
    summary.CopyFrom(response)
    del summary.assignments[:]
    result = RouteResult.model_validate(message_to_dict(summary, with_defaults=True))
    result.assignments = [Assignment(id=a.id, route=a.route, gain=a.gain, cost=a.cost) for a in response.assignments]
    return result


def route_result_to_proto(result: RouteResult) -> router_pb2.RouteResponse:
    response = json_format.ParseDict(result.model_dump(mode="json", exclude={"assignments"}, exclude_none=True),
                                     router_pb2.RouteResponse())
    response.assignments.extend(assignments_to_proto(result.assignments))
    return response


def assignments_to_proto(assignments: list[Assignment]) -> list[router_pb2.Assignment]:
    return [router_pb2.Assignment(id=a.id, route=a.route, gain=a.gain, cost=a.cost) for a in assignments]


def route_result_from_json(text: str) -> RouteResult:
    """A RouteResult's JSON, read through the proto so that a summary persisted by an earlier
    version (proto JSON without its default values) still reads."""
    return route_result_from_proto(json_format.Parse(text, router_pb2.RouteResponse(), ignore_unknown_fields=True))


def diagnose_request_to_proto(request: DiagnoseRequest) -> router_pb2.DiagnoseRequest:
    return json_format.ParseDict(request.model_dump(mode="json", exclude_none=True),
                                 router_pb2.DiagnoseRequest())


def diagnosis_from_proto(response: router_pb2.DiagnoseResponse) -> Diagnosis:
    return Diagnosis.model_validate(message_to_dict(response, with_defaults=True))


def diagnosis_to_proto(diagnosis: Diagnosis) -> router_pb2.DiagnoseResponse:
    return json_format.ParseDict(diagnosis.model_dump(mode="json"), router_pb2.DiagnoseResponse())


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


def count_vectors_from_proto(message: common_pb2.CountVectors, field: str = "count_vectors",
                             rows: int | None = None) -> tuple[list[str], np.ndarray]:
    """The names and the (n, len(names)) values; `rows` requires exactly that many vectors."""
    names = list(message.feature_names)
    if not names:
        raise InvalidArgument(f"{field}.feature_names", "is empty")
    values = np.asarray(message.values, dtype=np.float64)
    if values.size % len(names):
        raise InvalidArgument(f"{field}.values",
                              f"{values.size} values is not a multiple of {len(names)} features")
    if not np.all(np.isfinite(values)):
        raise InvalidArgument(f"{field}.values", "must be finite")
    if rows is not None and values.size != rows * len(names):
        raise InvalidArgument(field, f"must hold exactly {rows} vector(s)")
    return names, values.reshape(-1, len(names))

