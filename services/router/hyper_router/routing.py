"""The Route use case: features from the tagger, the PPM from ppm, a selection under budget."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
import numpy as np
import pyarrow as pa

from hyper.api.access import CALLER
from hyper.api.clients import FeaturesNotCached, Tagged
from hyper.api.messages import (
    AI,
    DEFAULT_SOURCE,
    PPM_STRATEGIES,
    Budget,
    CountVector,
    EstimateBody,
    GuaranteeBody,
    RouteOptions,
    RouteResult,
    Skill,
)
from hyper.core.errors import InvalidArgument, NotFound
from hyper.core.features import FeatureMatrix
from hyper.core.lru_memo import Memo
from hyper.core.schema import Dataset, DatasetRef, Instance
from hyper.data import dataset_files
from hyper.data.ingest import ReadChunk
from hyper.data.label_sources import LabelRoles, check_present, judge_confidence, resolve, sources_in
from hyper.method.error_models import ErrorModel, Inputs
from hyper.method.performance_models import PerformanceModel
from hyper.reports.route_report import RoutedPair, RouteReport, best_budget_verdict, feature_shares
from hyper_router import label_routing
from hyper_router.diagnosis import Diagnosis, diagnose, require_judge_labels
from hyper_router.label_routing import Evidence, Plan, RouteModels, SkillNotDemonstrated
from hyper_router.metrics import Phases
from hyper_router.problem import ForcedSplit, PaidItems, build_problem, paid_problem, split_forced
from hyper_router.quota import Quotas
from hyper_router.route_plan import (
    LabelAccuracy,
    PPMScore,
    Predictor,
    budget_curve,
    choose,
    item_gains,
    per_instance,
)
from hyper_router.selection import RoutingProblem

log = logging.getLogger(__name__)

class TaggerPeer(Protocol):
    """What the router needs of the tagger (the gRPC client, or a fake in tests)."""

    def feature_set_version(self) -> str: ...

    def tag_with_raw(self, instances: list[Instance]) -> Tagged: ...

    def missing_keys(self, keys: list[str]) -> list[int]: ...

    def annotate_with_usage(self, instances: list[Instance]) -> Any:
        """An AnnotateResponse: `judgements` in order, `usage.cost`."""


class PPMPeer(Protocol):
    """What the router needs of ppm: the current version's name (the promoted one, else the latest),
    and a model's artifact."""

    def current_version(self, model: str = "") -> str: ...

    def artifact(self, model: str = "", version: str = "") -> dict: ...


@dataclass
class AssignmentColumns:
    """A route's assignments as columns, in dataset order (a route may hold millions)."""

    ids: list[str]
    routes: list[str]  # per instance: a paid source's name or "ai"
    gains: np.ndarray  # per instance, of its (first) paid source
    costs: np.ndarray  # per instance, what its route costs

    def table(self) -> pa.Table:
        return pa.table({"id": self.ids, "route": pa.array(self.routes).dictionary_encode(),
                         "gain": self.gains, "cost": self.costs})

    def rows(self) -> Iterable[tuple[str, str, float, float]]:
        return zip(self.ids, self.routes, self.gains.tolist(), self.costs.tolist(), strict=True)


@dataclass
class Route:
    """A route as the core makes it: the summary (a RouteResult without assignments and, until
    it is persisted, without an id) and every assignment as columns."""

    result: RouteResult
    assignments: AssignmentColumns


def skill_warnings(model: PerformanceModel, version: str) -> list[str]:
    skill = model.skill
    imported = ([f"PPM {version} was imported from {model.imported_from}: its skill was measured on the runs it "
                 "was fitted on there, not verified on runs here"] if model.imported_from else [])
    if skill.demonstrated:
        return imported
    return imported + [f"PPM {version} has no demonstrated skill: the cross-validated Spearman of its "
            f"predictions with the scores of its {skill.n_runs} runs is {skill.spearman:.2f}, 95% "
            f"interval [{skill.ci_low:.2f}, {skill.ci_high:.2f}], which includes zero. Its "
            "predicted score, and the routing of the strategies that follow it, may be no better "
            "than chance."]


def feature_set_warnings(models: RouteModels, features_version: str) -> list[str]:
    """A model fitted on features that another tagger computed (another sentence model or
    runtime, NER model or tag backend): the same tag names, but not the same tags."""
    fitted = ([(f"PPM {models.ppm_version}", models.ppm.feature_set_version)] if models.ppm else []) + (
        [(f"error model {models.errors_name} {models.errors_version}", models.errors.feature_set_version)]
        if models.errors else [])
    return [f"{model} was fitted on features of version {version}, and the tagger now computes version "
            f"{features_version} (another sentence model or runtime, NER model or tag backend): a tag may "
            "not mean what it meant to the model, so its predictions and intervals may not hold for this "
            "route. Refit it on runs tagged with the current features."
            for model, version in fitted if version and version != features_version]


def confidence_key(dataset: Dataset) -> bytes:
    """What of the labels the features depend on: the judge confidences."""
    return dataset.judge_confidences.tobytes()


def with_judge_labels(dataset: Dataset, options: RouteOptions) -> tuple[Dataset, np.ndarray]:
    """The dataset with the judge's confidence from its labels where it has none given, and
    which pairs have no AI label (they can only go to humans); nothing without ai_source."""
    if not options.ai_source:
        return dataset, np.zeros(len(dataset), dtype=bool)
    roles = LabelRoles(ai=options.ai_source, judges=tuple(options.judges))
    available = sources_in(dataset.instances)
    check_present("ai_source", [roles.ai], available)
    check_present("judges", roles.judges, available)
    instances = [i if i.judge_confidence is not None else
                 dataclasses.replace(i, judge_confidence=judge_confidence(i, roles))
                 for i in dataset.instances]
    forced = np.array([roles.ai not in i.labels for i in instances])
    return dataclasses.replace(dataset, instances=instances), forced


def dataset_fingerprint(dataset: Dataset) -> str:
    return hashlib.sha256("\n".join(i.content_key() + i.id for i in dataset.instances)
                          .encode()).hexdigest()


def file_identity(ref: DatasetRef) -> tuple | None:
    """What decides a dataset read from a file: the file's identity and how it is read.
    None when the file cannot be stat'ed (reading it then reports the error)."""
    try:
        stat = os.stat(ref.path)
    except OSError:
        return None
    return (os.path.realpath(ref.path), stat.st_mtime_ns, stat.st_size, ref)


BEGIN = ("; to begin without a model, route with --strategy auto (a random sample for humans, the rest by the "
         "judge's confidence) or uncertainty")


@contextlib.contextmanager
def missing_model(message: str) -> Iterator[None]:
    """ppm's NOT_FOUND (over gRPC, or a fake's NotFound) as NotFound with how to begin."""
    try:
        yield
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
        raise NotFound(message + BEGIN) from None
    except NotFound:
        raise NotFound(message + BEGIN) from None


# The options a routing problem depends on (the budget and the strategy do not change it).
PROBLEM_OPTIONS = {"sources", "human_cost_model"}


class Router:
    """The Route use case. Memos make a repeated Route cheap: a dataset file is read again,
    and the tagger asked again, only when the file or the tagger's feature set has changed."""

    def __init__(self, tagger: TaggerPeer, ppm: PPMPeer, memo_size: int = 8,
                 data_roots: tuple[Path, ...] | None = None, quotas: Quotas | None = None,
                 memo_bytes: int = 0, max_pairs: int = 0):
        self.tagger = tagger
        self.ppm = ppm
        self.quotas = quotas or Quotas.of()
        self.data_roots = data_roots  # None: any file (a library user's own process)
        self.max_pairs = max_pairs  # 0: no ceiling
        # Bounded in bytes too: which files and datasets are memoised is the callers' choice.
        self.datasets: Memo[Dataset] = Memo(memo_size, memo_bytes)
        self.tags: Memo[Tagged] = Memo(memo_size, memo_bytes)
        self.models: Memo[tuple[PerformanceModel, str]] = Memo(16)
        self.error_models: Memo[tuple[ErrorModel, str]] = Memo(16)
        self.paid: Memo[PaidItems] = Memo(memo_size, memo_bytes)

    def within_ceiling(self, pairs: int) -> None:
        """Refuses a dataset larger than one Route may hold in the router's memory."""
        if self.max_pairs and pairs > self.max_pairs:
            raise InvalidArgument("dataset", f"has more than {self.max_pairs:,} pairs, the most one Route may hold "
                                             "in this router's memory (HYPER_ROUTE_MAX_PAIRS, set from its memory "
                                             "limit): split it, or give the router more memory")

    def load_dataset(self, ref: DatasetRef) -> tuple[Dataset, Hashable]:
        """The dataset a file holds, and a key that changes whenever its content may have."""
        if self.data_roots is not None:
            dataset_files.check_under_roots(ref.path, self.data_roots)
        identity = file_identity(ref)
        if identity is None:
            dataset = self.read_within_ceiling(ref)
            return dataset, dataset_fingerprint(dataset)
        return self.datasets.get_or_compute(identity, lambda: self.read_within_ceiling(ref)), identity

    def read_within_ceiling(self, ref: DatasetRef) -> Dataset:
        """The file read a chunk at a time, stopped as soon as it passes the ceiling. Each chunk
        is warmed while the next one is read (the tagger works on the other core meanwhile);
        one chunk at most is in flight, and its error surfaces at the next chunk or the end."""
        in_flight: list[Future] = []

        def settled() -> None:
            while in_flight:
                in_flight.pop().result()

        def counted(chunk: ReadChunk) -> None:
            self.within_ceiling(chunk.before + len(chunk.kept))
            settled()
            in_flight.append(warming.submit(contextvars.copy_context().run, self.warm, chunk))

        with ThreadPoolExecutor(1, thread_name_prefix="warm") as warming:
            dataset = dataset_files.read_dataset_ref(ref, counted)
            settled()
        self.within_ceiling(len(dataset.instances))
        return dataset

    def warm(self, chunk: ReadChunk) -> None:
        """A chunk of a file being read: the tagger computes (and caches) what it has not
        cached yet, from the text of those pairs only; the router holds a file's pairs by
        content key (the tagger tags them by key), so a million pairs' text is never in memory
        at once."""
        missing = self.tagger.missing_keys([instance.text_key for instance in chunk.kept])
        if missing:
            self.tagger.tag_with_raw(chunk.with_text(missing))

    @staticmethod
    def tags_key(dataset: Dataset, dataset_key: Hashable | None) -> Hashable:
        # (The key also covers the judge confidences, which the judge features are bins of.)
        return dataset_key or dataset_fingerprint(dataset), confidence_key(dataset)

    def paid_problem(self, dataset: Dataset, options: RouteOptions, tagged: Tagged, model: PerformanceModel | None,
                     version: str, dataset_key: Hashable | None) -> PaidItems:
        """Memoised for a file (its identity covers the instances' own costs; an inline
        dataset's fingerprint does not)."""
        if dataset_key is None:
            return paid_problem(dataset, options, tagged, model)
        key = (self.tags_key(dataset, dataset_key), self.tagger.feature_set_version(), version,
               options.model_dump_json(include=PROBLEM_OPTIONS))
        return self.paid.get_or_compute(key, lambda: paid_problem(dataset, options, tagged, model))

    def tag(self, dataset: Dataset, key: Hashable) -> Tagged:
        # The tagger's feature-set version is part of the key: a new tagger means new features.
        # (The key also covers the judge confidences, which the judge features are bins of.)
        version = self.tagger.feature_set_version()
        return self.tags.get_or_compute((key, version), lambda: self.tagger.tag_with_raw(dataset.instances))

    def model(self, name: str, version: str) -> tuple[PerformanceModel, str]:
        # Versions are immutable, so a resolved one is cached; "latest" is resolved per call.
        resolved = version or self.ppm.current_version(name)
        return self.models.get_or_compute(
            (name, resolved), lambda: (PerformanceModel.from_json(self.ppm.artifact(name, resolved)), resolved))

    def judge_confidence(self, dataset: Dataset, forced: np.ndarray, allow_judge_calls: bool) -> np.ndarray:
        """The AI judge's confidence per pair: the dataset's, else, where the request allows
        the calls, the tagger's judge's (the pairs that can only go to humans need none)."""
        given = dataset.judge_confidences.copy()
        missing = np.flatnonzero(np.isnan(given) & ~forced)
        if len(missing) and not allow_judge_calls:
            raise InvalidArgument("allow_judge_calls", f"{len(missing)} of {len(given)} pairs have no judge "
                                  "confidence (no judge_confidence, no label of the ai_source): uncertainty "
                                  "would ask the judge for them, a paid call per pair; allow the calls, or give "
                                  "the confidences")
        if len(missing):  # the tagger caches verdicts by content and judge; the quotas count what it calls
            caller = CALLER.get()
            self.quotas.judge_money.require_room(caller)
            self.quotas.judged_pairs.reserve(caller, len(missing))
            judged = self.tagger.annotate_with_usage([dataset.instances[k] for k in missing])
            self.quotas.judge_money.charge(caller, judged.usage.cost)
            given[missing] = [j.confidence for j in judged.judgements]
        return np.nan_to_num(given, nan=0.0)

    def diagnose(self, dataset: Dataset, roles: LabelRoles, seed: int,
                 dataset_key: Hashable | None = None) -> Diagnosis:
        """Can routing pay on this data (see hyper_router.diagnosis)? The judge's confidence from
        the labels is part of the features, as it is for Route."""
        if not dataset.instances:
            raise InvalidArgument("dataset", "has no instances")
        resolved = resolve(dataset.instances, roles)
        require_judge_labels(resolved, roles)  # before the costly tagging
        instances = [dataclasses.replace(i, judge_confidence=None if np.isnan(c) else float(c))
                     if i.judge_confidence is None else i
                     for i, c in zip(dataset.instances, resolved.confidence, strict=True)]
        dataset = dataclasses.replace(dataset, instances=instances)
        tagged = self.tag(dataset, (dataset_key or dataset_fingerprint(dataset), confidence_key(dataset)))
        return diagnose(dataset, tagged.features, roles, seed)

    def prepare(self, dataset: Dataset, options: RouteOptions, dataset_key: Hashable | None
                ) -> tuple[Dataset, np.ndarray, Tagged]:
        """The dataset with the judge's confidences, which pairs only humans can label, and its
        features (memoised: a report of a route finds them again)."""
        dataset, forced = with_judge_labels(dataset, options)
        try:
            tagged = self.tag(dataset, self.tags_key(dataset, dataset_key))
        except FeaturesNotCached:
            self.datasets.discard(dataset_key)  # the next call reads the file (and warms the tagger) again
            raise
        return dataset, forced, tagged

    def report(self, route: RouteResult, dataset: Dataset, dataset_key: Hashable | None = None,
               sample_size: int = 10) -> RouteReport:
        """A persisted route explained: its budget curve (routed again with the route's strategy,
        PPM version, judges and budget as a fraction), the feature shares of its human-routed
        pairs against the dataset, the judge's confidence by group, and the pairs with the
        largest gains in each group."""
        options = RouteOptions(strategy=route.strategy, ppm_model=route.ppm_model, ppm_version=route.ppm_version,
                               ai_source=route.ai_source, judges=route.judges, budget_curve=True)
        again = self.route(dataset, Budget(fraction=route.budget_fraction), options, dataset_key).result
        best = max(again.budget_curve, key=lambda p: p.predicted, default=None)
        with_curve = route.model_copy(update={"budget_curve": again.budget_curve,
                                              "optimal_budget_fraction": best.budget_fraction if best else None})
        dataset, _, tagged = self.prepare(dataset, options, dataset_key)
        routes = {a.id: a for a in route.assignments}
        if set(routes) != set(tagged.features.instance_ids):
            raise InvalidArgument("route_id", "the routed file has changed since the route was made")
        ids = tagged.features.instance_ids
        human = np.array([routes[i].route != AI for i in ids])
        by_id = {i.id: i for i in dataset.instances}
        texts = by_id if route.dataset_ref is None or not any(i.text_key for i in dataset.instances) else {
            i.id: i for i in dataset_files.read_dataset_ref(route.dataset_ref.to_dataset_ref()).instances}
        confidence = [(routes[i].route != AI, float(c)) for i in ids
                      if (c := by_id[i].judge_confidence) is not None]
        ranked = sorted(route.assignments, key=lambda a: -a.gain)
        sample = ([a for a in ranked if a.route != AI][:sample_size]
                  + [a for a in ranked if a.route == AI][:sample_size])
        notes = [] if again.predicted_score is None or route.predicted_score is None or \
            abs(again.predicted_score - route.predicted_score) < 1e-6 else [
            f"Routed again, the PPM predicts {again.predicted_score:.4f} at this budget where the route said "
            f"{route.predicted_score:.4f}: the file, the PPM version's inputs or the route's options have changed "
            "since (a route made before its judges were recorded is explained without them)."]
        return RouteReport(
            with_curve, best_budget_verdict([p.model_dump() for p in again.budget_curve], best.budget_fraction)
            if best else "no budget curve: no model predicts this route's score",
            feature_shares(tagged.features.feature_names, tagged.features.bits, human),
            [c for is_human, c in confidence if is_human], [c for is_human, c in confidence if not is_human],
            [RoutedPair(a.id, a.route, a.gain, texts[a.id].prompt, by_id[a.id].judge_confidence) for a in sample],
            notes)

    def route_models(self, options: RouteOptions) -> RouteModels:
        """The PPM (needed by the PPM strategies) and the error model (by the label-quality
        strategies and the guaranteed mode); what a strategy needs and lacks is NOT_FOUND."""
        needs_ppm = options.strategy in PPM_STRATEGIES and options.target_accuracy is None
        models = RouteModels()
        name = options.ppm_model or "default"
        if needs_ppm or options.ppm_version:
            with missing_model(f"no PPM named {name!r} has been fitted yet: the {options.strategy} strategy follows "
                               "one (`hyper train` fits it)"):
                models.ppm, models.ppm_version = self.model(name, options.ppm_version)
        models.errors_name = options.error_model or f"{name}.errors"
        if options.strategy == "error_model" or options.target_accuracy is not None:
            with missing_model(f"no error model named {models.errors_name!r} has been fitted yet: `hyper train` "
                               "fits one on pairs with human and judge labels"):
                models.errors, models.errors_version = self.error_model(models.errors_name,
                                                                        options.error_model_version)
            return models
        try:
            models.errors, models.errors_version = self.error_model(models.errors_name, options.error_model_version)
        except NotFound:
            models.errors_name = ""
        return models

    def error_model(self, name: str, version: str) -> tuple[ErrorModel, str]:
        with missing_model(f"no error model named {name!r}"):
            resolved = version or self.ppm.current_version(name)
            return self.error_models.get_or_compute(
                (name, resolved), lambda: (ErrorModel.from_json(self.ppm.artifact(name, resolved)), resolved))

    def route(self, dataset: Dataset, budget: Budget | None, options: RouteOptions,
              dataset_key: Hashable | None = None, phases: Phases | None = None) -> Route:
        if not dataset.instances:
            raise InvalidArgument("dataset", "has no instances")
        phases = phases or Phases()
        models = self.route_models(options)
        with phases("features"):
            dataset, forced, tagged = self.prepare(dataset, options, dataset_key)
        with phases("routing"):
            return self.route_prepared(dataset, budget, options, dataset_key, models, forced, tagged)

    def route_prepared(self, dataset: Dataset, budget: Budget | None, options: RouteOptions,
                       dataset_key: Hashable | None, models: RouteModels, forced: np.ndarray, tagged: Tagged
                       ) -> Route:
        inputs = models.errors.inputs(tagged.features.bits, tagged.features.feature_names,
                                      dataset.judge_confidences) if models.errors else None
        # Only a requested uncertainty route asks the tagger's judge for missing confidences; a
        # cold start without them takes a random order.
        confidence = self.judge_confidence(dataset, forced, options.allow_judge_calls) \
            if options.strategy == "uncertainty" else \
            dataset.judge_confidences
        paid = self.paid_problem(dataset, options, tagged, models.ppm, models.ppm_version, dataset_key)
        label_gains = models.errors.calibrated.gains(inputs) if models.errors and inputs else None
        problem, total = build_problem(paid, budget or Budget(fraction=1.0), confidence, label_gains)
        split = split_forced(problem, forced, options.ai_source)
        known = bool(np.isfinite(confidence[~forced]).all())
        plan = label_routing.plan(options, models, problem.budget / max(total, 1e-12), known)
        return self.assemble(dataset, tagged.features, options, models, inputs, split, total, plan)

    def assemble(self, dataset: Dataset, features: FeatureMatrix, options: RouteOptions, models: RouteModels,
                 inputs: Inputs | None, split: ForcedSplit, total: float, plan: Plan) -> Route:
        """The chosen pairs, their prediction and curve, and the route's summary."""
        problem = split.problem
        warnings = list(plan.warnings)
        if models.ppm is not None and plan.strategy in PPM_STRATEGIES:
            warnings = skill_warnings(models.ppm, models.ppm_version) + warnings
            if models.ppm.target == "label_accuracy":  # its Spearman over its own mixes says little
                warnings += label_routing.unmeasured_warning(plan.strategy)
            if options.require_skill and not models.ppm.skill.demonstrated:
                raise SkillNotDemonstrated(warnings[0] + " (require_skill is set)")
        evidence = Evidence([], 0.0)
        if models.errors is not None and inputs is not None:
            evidence = label_routing.check_evidence(models.errors, inputs, options, 1 - problem.budget / max(total, 1))
        guarantee = None
        if options.target_accuracy is not None:
            assert models.errors is not None and inputs is not None
            guarantee = label_routing.guaranteed(models.errors, inputs, split.forced, options)
            chosen = np.zeros(len(problem.costs), dtype=bool)
            chosen[: problem.n_instances] = guarantee.to_human  # the first paid source's items
            warnings += label_routing.guarantee_warnings(guarantee)
        else:
            chosen = choose(split, plan.strategy, options, problem.budget)
        predictor = self.predictor(models, problem, inputs, evidence)
        prediction = predictor.predict(chosen, options.interval_level) if predictor else None
        curve = budget_curve(split, plan.strategy, options, total, predictor) \
            if options.budget_curve and predictor and guarantee is None else []
        routes, gains, costs = per_instance(problem, chosen, item_gains(problem), options.sources)
        spent = chosen.sum() if problem.exact_count else problem.costs[chosen].sum()
        n_by_source = dict(Counter(routes))
        errors = models.errors
        result = RouteResult(
            warnings=feature_set_warnings(models, features.feature_set_version) + evidence.warnings + warnings,
            ppm_skill=Skill(**models.ppm.skill.to_json()) if models.ppm else None,
            ppm_target=prediction.target if prediction else "", n_forced_human=int(split.forced.sum()),
            route_id="", strategy=options.strategy, n_instances=len(routes),
            n_human=n_by_source.get(DEFAULT_SOURCE, 0), n_skipped_rows=dataset.n_skipped, n_by_source=n_by_source,
            budget_fraction=float(spent / max(total, 1e-12)), total_cost=float(costs.sum()),
            predicted_score=prediction.mean if prediction else None,
            predicted_lower=prediction.low if prediction else None,
            predicted_upper=prediction.high if prediction else None, interval_level=options.interval_level,
            ppm_version=models.ppm_version, budget_curve=curve,
            optimal_budget_fraction=max(curve, key=lambda p: p.predicted).budget_fraction if curve else None,
            assignments=[], ai_source=options.ai_source, ppm_model=options.ppm_model, judges=options.judges,
            count_vector=CountVector(feature_names=models.ppm.feature_names, values=problem.counts(chosen)[0].tolist())
            if models.ppm else CountVector(), strategy_chosen=plan.strategy, strategy_reason=plan.reason,
            routing_gain=EstimateBody(**plan.gain.to_json()) if plan.gain else None,
            required_budget_fraction=guarantee.budget_fraction if guarantee else None,
            guarantee=GuaranteeBody(target=guarantee.target, risk=guarantee.risk, reachable=guarantee.reachable,
                                    bound=guarantee.bound if guarantee.reachable else 0.0,
                                    assumption=label_routing.ASSUMPTION) if guarantee else None,
            error_model=models.errors_name, error_model_version=models.errors_version,
            error_model_skill=errors.skill.to_json() if errors else None)
        log.info("routed", extra={"strategy": plan.strategy, "n_instances": len(dataset),
                                  "n_paid": int(chosen.sum()), "predicted_score": result.predicted_score,
                                  "warnings": len(result.warnings)})
        return Route(result, AssignmentColumns(features.instance_ids, routes, gains, costs))

    @staticmethod
    def predictor(models: RouteModels, problem: RoutingProblem, inputs: Inputs | None,
                  evidence: Evidence) -> Predictor | None:
        """What predicts a route's score: the error model's label accuracy, unless the PPM
        predicts another target (the paper's rm_accuracy); nothing at a cold start."""
        if models.errors is not None and inputs is not None and (models.ppm is None or
                                                                 models.ppm.target == "label_accuracy"):
            return LabelAccuracy(models.errors, problem, inputs, evidence)
        if models.ppm is not None:
            return PPMScore(models.ppm, problem)
        return None
