"""The Route API as typed models: the one source of its fields, defaults and checks.

The router's core takes `Budget` and `RouteOptions`; the gRPC servicer builds them from a
RouteRequest message; the REST gateway takes `RouteRequest` as its body and answers
`RouteResult` (so its OpenAPI page documents every field); the CLI builds the same
`RouteRequest` and reads its defaults and choices from here. The strategy registry is here
too: the solver, the CLI help and the proto's documentation all follow `STRATEGIES`.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from hyper.core.errors import InvalidArgument
from hyper.core.schema import NAME_PATTERN, DatasetRef, has_lone_surrogate

OPTIONAL_NAME = f"^(?:{NAME_PATTERN[1:-1]})?$"  # a stored thing's name, or empty for the default
ROUTE_ID = re.compile(r"[0-9a-f]{32}")  # what the router mints for every route (fullmatch)
UINT64_MAX = 2**64 - 1  # the proto's uint64 fields
MAX_PAGE = 100_000  # assignments in one answer (and one Parquet row group of a stored route)
MAX_REPORT_SAMPLE = 1000  # pairs of each route a report page shows

StrategyName = Literal["topk", "simulated", "optimal_pos", "optimal_grad", "random",
                       "uncertainty", "optimize", "error_model", "auto"]
STRATEGIES: dict[str, str] = {
    "topk": "the largest per-instance PPM gains (per unit cost) that fit the budget",
    "simulated": "the best of n_candidates knapsack mixes by predicted score (the paper's N=500; above "
                 "10,000, walks explored by swaps in their boundary group: docs/scale.md)",
    "optimal_pos": "every instance with a positive gain, largest first; the budget is a cap",
    "optimal_grad": "gain order while the predicted score still rises by more than epsilon",
    "random": "uniformly random instances: the baseline every strategy must beat",
    "uncertainty": "humans where the AI judge is least confident (needs judge confidences)",
    "optimize": "local search on the PPM's prediction under the budget, never below simulated",
    "error_model": "the largest expected gains in label accuracy (P(judge wrong) - P(human wrong)) of the "
                   "calibrated error model",
    "auto": "the label-quality strategy (error_model or uncertainty) that gained most over random in "
            "cross-fitting on the error model's history; with no error model yet, a cold start: a random "
            "sample for humans, the rest by the judge's confidence",
}
# Strategies that need a PPM (the others need an error model, or nothing).
PPM_STRATEGIES = ("topk", "simulated", "optimal_pos", "optimal_grad", "optimize")
assert tuple(STRATEGIES) == get_args(StrategyName)

DEFAULT_SOURCE = "human"  # the paid source whose PPM columns carry plain feature names
AI = "ai"  # the free default source: everything not routed to a paid source


def only_valid_unicode(value: Any) -> Any:
    """The raw body as given, if every string in it is valid Unicode. JSON can carry a lone
    UTF-16 surrogate (\\ud800) that Python decodes and nothing can encode again (protobuf, a
    file): refused here, naming where, instead of failing on the way to the router."""
    where = _lone_surrogate(value, ())
    if where is not None:
        raise PydanticCustomError("unicode", "{field}: not valid Unicode (a lone UTF-16 surrogate)",
                                  {"field": field_path(where) or "body"})
    return value


def _lone_surrogate(value: Any, path: tuple) -> tuple | None:
    if isinstance(value, str):
        return path if has_lone_surrogate(value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and has_lone_surrogate(key):
            return (*path, key)
        found = _lone_surrogate(item, (*path, key))
        if found is not None:
            return found
    return None



def exactly_one_of(*names: str) -> ConfigDict:
    """The JSON-schema form of a validator's "exactly one of these fields" rule, so that the
    OpenAPI document (and a client generated from it) knows the rule the server checks."""
    return ConfigDict(json_schema_extra={"oneOf": [
        {"required": [name], "properties": {name: {"not": {"type": "null"}}}} for name in names]})


class Budget(BaseModel):
    """Exactly one of: a fraction of the instances (or of the total cost when costs vary), a
    count of paid annotations (costs are then ignored), or money in cost units."""

    model_config = exactly_one_of("fraction", "count", "money")

    fraction: float | None = Field(None, ge=0.0, le=1.0)
    count: int | None = Field(None, ge=0, le=UINT64_MAX)
    money: float | None = Field(None, ge=0.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _exactly_one(self) -> Budget:
        if sum(value is not None for value in (self.fraction, self.count, self.money)) != 1:
            raise ValueError("give exactly one of a fraction, a count or money")
        return self


class Source(BaseModel):
    """A paid annotation source; "human" uses the PPM's plain feature columns, any other name
    the columns "<name>|<feature>". Its flat cost per instance, unless the instance has its own."""

    name: str = Field(min_length=1)
    cost: float = Field(1.0, gt=0.0, allow_inf_nan=False)


class CostModel(BaseModel):
    """Human cost of an instance from its features: base + per_1k_tokens * (prompt and both
    responses, in tokens) / 1000 + the sum of feature_costs over the features it carries."""

    base: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    per_1k_tokens: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    feature_costs: dict[str, float] = Field(default_factory=dict)


class RouteOptions(BaseModel):
    """How to route: every field but the dataset and the budget."""

    model_config = ConfigDict(extra="forbid")

    strategy: StrategyName = "topk"
    seed: int = Field(0, ge=0, le=UINT64_MAX)
    n_candidates: int = Field(500, ge=1, le=1_000_000,
                              description="knapsack candidates drawn by simulated and optimize")
    ppm_model: str = Field("", pattern=OPTIONAL_NAME, description="PPM name; empty = the default model")
    ppm_version: str = Field("", pattern=OPTIONAL_NAME, description="PPM version; empty = the latest")
    epsilon: float = Field(0.0, ge=0.0, description="optimal_grad stops once the predicted "
                                                     "score rises by no more than this")
    interval_level: float = Field(0.9, gt=0.0, lt=1.0,
                                  description="central probability of the prediction interval")
    budget_curve: bool = Field(False, description="also return the predicted score against "
                                                  "budget, and its best budget")
    curve_points: int = Field(11, ge=2, le=101)
    sources: list[Source] = Field(default_factory=lambda: [Source(name=DEFAULT_SOURCE)],
                                  min_length=1, description="paid sources; default: human at 1")
    human_cost_model: CostModel | None = None
    ai_source: str = Field("", description="the label_<source> the AI judge gave: pairs without "
                                           "it can only go to humans; with judges, its confidence")
    judges: list[str] = Field(default_factory=list,
                              description="other judges' label sources: their agreement with the "
                                          "AI label (and the _swapped twins') is its confidence")
    require_skill: bool = Field(False, description="refuse (FAILED_PRECONDITION) to route when the strategy's "
                                                   "skill is not demonstrated: its cross-fitted gain over random, "
                                                   "or a PPM strategy's PPM skill, has an interval including zero")
    target_accuracy: float | None = Field(None, gt=0.0, le=1.0, description="the guaranteed mode instead of a "
                                          "budget: the smallest human budget whose label accuracy reaches this "
                                          "with probability at least 1 - risk")
    risk: float = Field(0.1, gt=0.0, lt=1.0, description="the guaranteed mode's risk of missing its target")
    error_model: str = Field("", pattern=OPTIONAL_NAME, description="the error model's name; empty = "
                                                                     "<ppm_model or default>.errors")
    error_model_version: str = Field("", pattern=OPTIONAL_NAME,
                                     description="the error model's version; empty = the promoted, else the latest")
    exploration_fraction: float | None = Field(None, ge=0.0, le=1.0, description="auto without an error model "
                                               "(a cold start): the budget's share spent on a random sample for "
                                               "humans (default 0.3)")
    allow_judge_calls: bool = Field(False, description="uncertainty: ask the tagger's judge for the confidence "
                                                       "of pairs that have none (paid where the judge is an LLM "
                                                       "endpoint); off: such a Route is refused")

    @field_validator("sources")
    @classmethod
    def _distinct_paid_sources(cls, sources: list[Source]) -> list[Source]:
        names = [source.name for source in sources]
        if len(set(names)) != len(names) or AI in names:
            raise ValueError(f"need distinct paid sources other than {AI!r}: {names}")
        return sources


class DatasetRefBody(BaseModel):
    """A file the router reads itself, in one of the ingestion formats."""

    path: str = Field(min_length=1)
    format: str = "auto"
    columns: dict[str, str] = Field(default_factory=dict,
                                    description="field name -> column name in the file")
    skip_bad_rows: bool = False

    def to_dataset_ref(self) -> DatasetRef:
        return DatasetRef(self.path, self.format, tuple(sorted(self.columns.items())), self.skip_bad_rows)


class InstanceBody(BaseModel):
    """One preference pair sent inline; validated like a row of a plain-format file."""

    id: str = ""
    prompt: str
    response_a: str
    response_b: str
    labels: dict[str, str] = Field(default_factory=dict)
    judge_confidence: float | None = None
    costs: dict[str, float] = Field(default_factory=dict)


class InstanceListBody(BaseModel):
    instances: list[InstanceBody]


class DatasetBody(BaseModel):
    """Exactly one of: a reference to a file, or the instances inline."""

    model_config = exactly_one_of("ref", "inline")

    ref: DatasetRefBody | None = None
    inline: InstanceListBody | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> DatasetBody:
        if (self.ref is None) == (self.inline is None):
            raise ValueError("give inline instances or a ref to a file")
        return self


class RouteRequest(RouteOptions):
    """Route(dataset, budget) with its options; or, in the guaranteed mode, Route(dataset,
    target_accuracy, risk) without a budget."""

    model_config = exactly_one_of("budget", "target_accuracy") | ConfigDict(extra="forbid")

    dataset: DatasetBody
    budget: Budget | None = None
    page_size: int = Field(0, ge=0, le=MAX_PAGE, description="assignments in the answer (default 10,000); "
                                                             "the rest from GET /v1/routes/{route_id}?page_token=")

    _valid_unicode = model_validator(mode="before")(lambda value: only_valid_unicode(value))

    @model_validator(mode="after")
    def _budget_or_target(self) -> RouteRequest:
        if (self.budget is None) == (self.target_accuracy is None):
            raise ValueError("give a budget, or a target_accuracy (the guaranteed mode), not both")
        return self


class EstimateBody(BaseModel):
    """A quantity and its interval (95% unless said)."""

    mean: float
    ci_low: float
    ci_high: float


class ErrorModelSkillBody(BaseModel):
    """An error model's skill, cross-validated on its history: AUC of its judge-error ranking and
    the expected calibration error of its probabilities, with 95% intervals."""

    auc: EstimateBody
    calibration_error: EstimateBody
    n_pairs: int
    n_errors: int


class GuaranteeBody(BaseModel):
    """What the guaranteed mode promised, and under which assumption."""

    target: float
    risk: float
    reachable: bool = Field(description="false: no budget up to 100% reaches the target with that risk")
    bound: float = Field(description="the label accuracy guaranteed at the budget taken")
    assumption: str


class Assignment(BaseModel):
    id: str
    route: str = Field(description='the source that labels it: "human" (or another paid '
                                   'source) or "ai"')
    gain: float = Field(description="the PPM gain of its paid source (the first when it goes "
                                    "to ai)")
    cost: float


class CurvePoint(BaseModel):
    budget_fraction: float
    predicted: float
    lower: float
    upper: float
    n_paid: int
    cost: float


class Skill(BaseModel):
    """Cross-validated Spearman of the PPM's predictions with its runs' scores, and the 95%
    interval: skill is demonstrated when ci_low > 0."""

    spearman: float
    ci_low: float
    ci_high: float
    n_runs: int


class CountVector(BaseModel):
    """A mix's count vector: per feature, how many of the paid pairs (per 1,000) carry it."""

    feature_names: list[str] = Field(default_factory=list)
    values: list[float] = Field(default_factory=list)


class RouteResult(BaseModel):
    """What Route answers (and GetRoute returns later, by route_id): the one shape of a route,
    which the router persists, the gRPC and REST APIs answer and `hyper route --out` writes.
    `assignments` is one page of the route (every assignment in a file `--out` wrote)."""

    warnings: list[str] = Field(description="what a user must know before trusting the result")
    ppm_skill: Skill | None = Field(None, description="the PPM's skill; absent when the route used no PPM")
    ppm_target: str = Field(description='what predicted_score predicts: "label_accuracy" (the error model, or a '
                                        'label-accuracy PPM) or "rm_accuracy" (a PPM of the paper\'s target); '
                                        '"" when nothing predicts')
    n_forced_human: int = Field(description="pairs without an AI label, routed to humans")
    route_id: str
    strategy: str
    n_instances: int
    n_human: int
    n_skipped_rows: int
    n_by_source: dict[str, int]
    budget_fraction: float
    total_cost: float
    predicted_score: float | None = Field(None, description="absent when no model can predict (a cold start)")
    predicted_lower: float | None = None
    predicted_upper: float | None = None
    interval_level: float
    ppm_version: str
    budget_curve: list[CurvePoint]
    optimal_budget_fraction: float | None = Field(None, description="the curve's best budget; "
                                                                    "absent without a curve")
    assignments: list[Assignment]
    dataset_ref: DatasetRefBody | None = Field(None, description="the file that was routed; absent "
                                                                 "when the instances came inline")
    ai_source: str = Field("", description="the label_<source> that labels the pairs routed to ai")
    ppm_model: str = Field("", description="the PPM's name (its version is ppm_version)")
    judges: list[str] = Field(default_factory=list, description="the request's other judges")
    next_page_token: str = Field("", description="set when `assignments` is one page of the route: "
                                                 "the next page is GET /v1/routes/{route_id}?page_token=...")
    count_vector: CountVector = Field(default_factory=CountVector,
                                      description="the routed mix's count vector in the PPM's features")
    strategy_chosen: str = Field("", description="the strategy that routed (auto takes one)")
    strategy_reason: str = Field("", description="why that strategy")
    routing_gain: EstimateBody | None = Field(None, description="its gain in label accuracy over random routing "
                                              "at this budget, cross-fitted on the error model's history")
    required_budget_fraction: float | None = Field(None, description="the guaranteed mode: the budget it needed")
    guarantee: GuaranteeBody | None = None
    error_model: str = Field("", description="the error model behind the prediction and the label-quality "
                                             "strategies (its version is error_model_version)")
    error_model_version: str = ""
    error_model_skill: ErrorModelSkillBody | None = None


class DiagnoseRequest(BaseModel):
    """Diagnose(dataset): can routing pay on this data, before anything is spent?"""

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetBody
    human_source: str = Field("human", description="the label_<source> of the paid human")
    ai_source: str = Field(min_length=1, description="the label_<source> of the AI judge")
    reference: list[str] = Field(default_factory=list, description="sources whose strict majority "
                                 "is the reference; default: the human source, or the other "
                                 "numbered annotators when it is one of them")
    judges: list[str] = Field(default_factory=list, description="other judges: their agreement "
                                                                "with the AI label is its confidence")
    seed: int = Field(0, ge=0, le=UINT64_MAX)

    _valid_unicode = model_validator(mode="before")(lambda value: only_valid_unicode(value))


class SourceAgreement(BaseModel):
    source: str
    agreement: EstimateBody


class FeatureErrors(BaseModel):
    feature: str
    n: int
    error_rate: EstimateBody


class ErrorAuc(BaseModel):
    inputs: str
    auc: EstimateBody


class AccuracyCurve(BaseModel):
    strategy: str
    label_accuracy: list[float]


class Diagnosis(BaseModel):
    """Agreement of each source with the reference, where the judge errs, whether its errors
    are predictable, and the label accuracy to expect at each budget."""

    n_pairs: int
    n_scored: int
    n_forced_human: int
    notes: list[str]
    agreement: list[SourceAgreement]
    judge_error_rate: EstimateBody
    worst_features: list[FeatureErrors]
    error_auc: list[ErrorAuc]
    budgets: list[float]
    expected_accuracy: list[AccuracyCurve]
    verdict: str


Model = TypeVar("Model", bound=BaseModel)


def field_path(location: tuple[int | str, ...]) -> str:
    """("sources", 0, "name") -> "sources[0].name": how the rest of the project names fields."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def validated(model: type[Model], data: dict[str, Any], prefix: str = "") -> Model:
    """The model built from `data`, or InvalidArgument naming the first field at fault."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        name = ".".join(part for part in (prefix, field_path(first["loc"])) if part)
        raise InvalidArgument(name or model.__name__.lower(), first["msg"]) from None
