"""One shape of a route: the RouteResult model is what the router persists, the gRPC and REST
APIs answer and `hyper route --out` writes. The proto messages and the gateway's OpenAPI are
checked against it here, field by field."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from hyper.api import messages, proto_convert
from hyper.core.settings import Settings
from hyper.v1 import common_pb2, router_pb2
from hyper_gateway.app import create_app

PAIRS = [(router_pb2.RouteResponse, messages.RouteResult), (router_pb2.Assignment, messages.Assignment),
         (router_pb2.CurvePoint, messages.CurvePoint), (common_pb2.Skill, messages.Skill),
         (common_pb2.CountVectors, messages.CountVector), (common_pb2.DatasetRef, messages.DatasetRefBody),
         (router_pb2.RouteRequest, messages.RouteRequest), (router_pb2.Budget, messages.Budget),
         (router_pb2.Source, messages.Source), (router_pb2.CostModel, messages.CostModel),
         (router_pb2.DiagnoseRequest, messages.DiagnoseRequest), (router_pb2.DiagnoseResponse, messages.Diagnosis),
         (common_pb2.Estimate, messages.EstimateBody), (common_pb2.ErrorModelSkill, messages.ErrorModelSkillBody),
         (router_pb2.Guarantee, messages.GuaranteeBody), (router_pb2.SourceAgreement, messages.SourceAgreement),
         (router_pb2.FeatureErrors, messages.FeatureErrors), (router_pb2.ErrorAuc, messages.ErrorAuc),
         (router_pb2.AccuracyCurve, messages.AccuracyCurve)]


@pytest.mark.parametrize(("message", "model"), PAIRS, ids=[m.__name__ for _, m in PAIRS])
def test_each_proto_message_has_exactly_the_fields_of_its_model(message, model: type[BaseModel]):
    assert {f.name for f in message.DESCRIPTOR.fields} == set(model.model_fields)


def a_full_route() -> messages.RouteResult:
    """Every field set to something other than its default."""
    return messages.RouteResult(
        warnings=["w"], ppm_skill=messages.Skill(spearman=0.4, ci_low=0.1, ci_high=0.6, n_runs=30),
        ppm_target="label_accuracy", n_forced_human=2, route_id="ab" * 16, strategy="optimize", n_instances=4,
        n_human=2, n_skipped_rows=1, n_by_source={"human": 2, "ai": 2}, budget_fraction=0.5, total_cost=2.0,
        predicted_score=0.8, predicted_lower=0.7, predicted_upper=0.9, interval_level=0.9, ppm_version="v1-x",
        budget_curve=[messages.CurvePoint(budget_fraction=0.0, predicted=0.7, lower=0.6, upper=0.8, n_paid=0,
                                          cost=0.0)],
        optimal_budget_fraction=0.0, assignments=[messages.Assignment(id="a", route="human", gain=0.1, cost=1.0)],
        dataset_ref=messages.DatasetRefBody(path="/d.jsonl", format="plain", columns={"prompt": "q"}),
        ai_source="gpt-4", ppm_model="m", judges=["j"], next_page_token="1",
        count_vector=messages.CountVector(feature_names=["f"], values=[3.0]))


def test_a_route_survives_the_proto_and_its_json_unchanged():
    route = a_full_route()
    assert proto_convert.route_result_from_proto(proto_convert.route_result_to_proto(route)) == route
    stored = route.model_copy(update={"assignments": [], "next_page_token": ""})
    assert proto_convert.route_result_from_json(stored.model_dump_json()) == stored


def test_the_gateway_answers_route_and_get_route_with_the_route_model():
    schema = create_app(Settings()).openapi()
    for path, method in (("/v1/route", "post"), ("/v1/routes/{route_id}", "get")):
        answer = schema["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert answer == {"$ref": "#/components/schemas/RouteResult"}
    assert set(schema["components"]["schemas"]["RouteResult"]["properties"]) == set(messages.RouteResult.model_fields)


def test_the_gateway_documents_every_refusal_with_its_body_and_no_status_it_never_sends():
    schema = create_app(Settings()).openapi()
    operations = [(path, op) for path, item in schema["paths"].items() if path.startswith("/v1/")
                  for op in item.values()]
    assert len(operations) == 6
    for path, operation in operations:
        responses = operation["responses"]
        assert "422" not in responses, path
        for status in ("400", "401", "403", "404", "429", "503"):
            body = responses[status]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_message_limit_is_a_413_before_it_reaches_the_router(chunked):
    from fastapi.testclient import TestClient

    settings = Settings(max_message_mb=1, router_address="127.0.0.1:1")  # nothing listens: a call would be 503
    client = TestClient(create_app(settings))
    body = b'{"dataset": {"instances": [' + b" " * (2 * 2**20) + b"]}}"
    content = (body[k:k + 65536] for k in range(0, len(body), 65536)) if chunked else body
    answer = client.post("/v1/route", content=content, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "REQUEST_ENTITY_TOO_LARGE"
    assert "HYPER_MAX_MESSAGE_MB" in answer.json()["error"]["message"]
    small = client.post("/v1/route", json={"dataset": {}, "budget": {"fraction": 0.1}})
    assert small.status_code == 400  # under the limit: read and checked as before


def test_the_openapi_document_states_the_exactly_one_of_rules_the_server_checks():
    """A body valid by the document is accepted by the server's models and one the models
    refuse for a one-of rule is invalid by the document (jsonschema over the document)."""
    import jsonschema

    components = create_app(Settings()).openapi()["components"]
    schema = {"$ref": "#/components/schemas/RouteRequest", "components": components}
    inline = {"inline": {"instances": []}}
    bodies = {
        "budget and dataset": ({"dataset": inline, "budget": {"fraction": 0.2}}, True),
        "target instead of a budget": ({"dataset": inline, "target_accuracy": 0.9}, True),
        "a null beside a value": ({"dataset": inline, "budget": {"fraction": None, "count": 3}}, True),
        "an empty budget": ({"dataset": {"ref": {"path": "x"}}, "budget": {}}, False),
        "an empty dataset": ({"dataset": {}, "budget": {"count": 3}}, False),
        "two budgets": ({"dataset": inline, "budget": {"count": 3, "money": 2.0}}, False),
        "both datasets": ({"dataset": {**inline, "ref": {"path": "x"}}, "budget": {"count": 3}}, False),
        "budget and target": ({"dataset": inline, "budget": {"count": 3}, "target_accuracy": 0.9}, False),
        "neither budget nor target": ({"dataset": inline}, False),
    }
    for name, (body, valid) in bodies.items():
        by_document = jsonschema.Draft202012Validator(schema).is_valid(body)
        try:
            messages.RouteRequest.model_validate(body)
            by_server = True
        except ValueError:
            by_server = False
        assert by_document == by_server == valid, name


def test_a_method_a_path_does_not_serve_is_a_405_naming_every_method_it_does():
    from fastapi.testclient import TestClient

    client = TestClient(create_app(Settings(router_address="127.0.0.1:1")))
    answer = client.request("OPTIONS", f"/v1/routes/{'0' * 32}")
    assert answer.status_code == 405 and answer.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert answer.headers["allow"] == "DELETE, GET"


@pytest.mark.parametrize(("body", "named"), [
    ('{"dataset": {"inline": {"instances": [{"id": "a", "prompt": "\\ud87b", "response_a": "x", "response_b": "y"}]}},'
     ' "budget": {"count": 1}}', "dataset.inline.instances[0].prompt: not valid Unicode"),
    ('{"dataset": {"ref": {"path": "x"}}, "budget": {"count": 1}, "seed": 362848734970039937208942592}', "seed"),
    ('{"dataset": {"ref": {"path": "x"}}, "budget": {"count": 36284873497003993720894}}', "budget.count"),
])
def test_what_protobuf_cannot_carry_is_a_400_naming_the_field_not_a_500(body, named):
    """Found by schemathesis: a lone surrogate or an integer past uint64 reached the proto."""
    from fastapi.testclient import TestClient

    client = TestClient(create_app(Settings(router_address="127.0.0.1:1")), raise_server_exceptions=False)
    answer = client.post("/v1/route", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and named in answer.json()["error"]["message"]
