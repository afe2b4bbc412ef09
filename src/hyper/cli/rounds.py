"""`hyper rounds`: routing new data in rounds over the running services. Each round trains a
PPM (the training loop: tagger, an rm-trainer Job, ppm) on the labelled pairs so far, routes
the next batch with its share of the budget, and takes the human labels of the pairs routed to
humans from the data's human-source column, as if the annotation tool had returned them; those
pairs join the next round's training. The same new data routed at once with the first round's
PPM, at the same total budget, is the comparison; both are scored on the data's reference
labels, which no PPM sees.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from hyper.api import proto_convert
from hyper.api.clients import PPMClient, RouterClient, TaggerClient
from hyper.api.messages import RouteRequest, validated
from hyper.cli.common import add_data_arguments, add_label_arguments, add_mixes_arguments, read_data
from hyper.core.atomic_files import write_json_atomic
from hyper.core.schema import Dataset, Instance
from hyper.core.settings import Settings
from hyper.data.label_sources import LabelRoles, resolve
from hyper.method.rounds import RoundRecord, run_rounds, split_batches
from hyper.workflows.training_loop import LoopConfig, run_loop, write_plain_jsonl


def team_view(instance: Instance, roles: LabelRoles) -> Instance:
    """What a team knows of a labelled pair: its human label and the judges' (no reference)."""
    kept = {roles.human, roles.ai, *roles.judges, f"{roles.ai}_swapped"}
    return dataclasses.replace(instance, labels={s: v for s, v in instance.labels.items() if s in kept})


class ServiceRounds:
    """The round steps over the services: fit = the training loop, route = Route over gRPC."""

    def __init__(self, args, settings: Settings, roles: LabelRoles, directory: Path):
        self.args, self.settings, self.roles, self.directory = args, settings, roles, directory
        self.tagger = TaggerClient.connect(settings)
        self.ppm = PPMClient.connect(settings)
        self.router = RouterClient.connect(settings)
        self.n_fits = 0

    def fit(self, training: list[Instance]) -> str:
        self.n_fits += 1
        # The reference of a team's refit is its own human labels: the data's reference stays unseen.
        roles = dataclasses.replace(self.roles, reference=(self.roles.human,))
        config = LoopConfig(n_candidates=self.args.mixes, seed=self.args.seed, model=self.args.ppm_model or "rounds",
                            roles=roles)
        result = run_loop(Dataset(training, source=f"round {self.n_fits}"), config, self.settings, self.tagger,
                          self.ppm)
        return result.ppm_version

    def route(self, version: str, batch: list[Instance], budget: int) -> np.ndarray:
        path = self.directory / f"batch-{self.n_fits}-{len(batch)}.jsonl"
        write_plain_jsonl(path, batch)
        body = validated(RouteRequest, {"dataset": {"ref": {"path": str(path.resolve()), "format": "plain"}},
                                "budget": {"count": budget}, "strategy": self.args.strategy,
                                "ppm_model": self.args.ppm_model or "rounds", "ppm_version": version,
                                "ai_source": self.roles.ai, "judges": list(self.roles.judges)})
        response = self.router.route(proto_convert.route_request_to_proto(body))
        return np.array([a.route != "ai" for a in response.assignments])

    def collect(self, routed: list[Instance]) -> list[Instance]:
        return [team_view(i, self.roles) for i in routed if self.roles.human in i.labels]


def label_accuracy(instances: list[Instance], to_human: np.ndarray, roles: LabelRoles) -> tuple[float, int]:
    resolved = resolve(instances, roles)
    correct = resolved.hybrid_correct(to_human)
    return float(correct.mean()), len(correct)


def cmd_rounds(args, settings: Settings) -> None:
    roles = LabelRoles(args.human_source, args.ai_source, tuple(args.reference), tuple(args.judge))
    dataset = read_data(args)
    order = np.random.default_rng(args.seed).permutation(len(dataset))
    n_history = int(round(args.history_fraction * len(dataset)))
    history = [team_view(dataset.instances[k], roles) for k in sorted(order[:n_history])]
    new = [dataset.instances[k] for k in sorted(order[n_history:])]
    total = int(round(args.budget * len(new)))
    directory = Path(args.out).parent / "rounds"
    directory.mkdir(parents=True, exist_ok=True)
    steps = ServiceRounds(args, settings, roles, directory)
    print(f"== {len(history)} history pairs, {len(new)} new pairs in {args.rounds} batches, {total} human labels "
          "in all", flush=True)

    def say(record: RoundRecord) -> None:
        print(f"round {record.round}: PPM {record.model} fitted on {record.n_training} labelled pairs; "
              f"{record.n_human} of {record.n_batch} routed to humans (budget {record.budget})", flush=True)

    outcome = {}
    for name, k in (("one-shot", 1), (f"{args.rounds} rounds", args.rounds)):
        print(f"== {name}", flush=True)
        batches = [[new[j] for j in part] for part in split_batches(len(new), k, args.seed)]
        result = run_rounds(history, batches, total, steps.fit, steps.route, steps.collect, say)
        routed = {i.id for batch, mask in zip(batches, result.to_human, strict=True)
                  for i, human in zip(batch, mask, strict=True) if human}
        accuracy, n_scored = label_accuracy(new, np.array([i.id in routed for i in new]), roles)
        outcome[name] = {"label_accuracy": accuracy, "n_scored": n_scored, "n_human": len(routed),
                         "ppm_versions": [r.model for r in result.rounds]}
    print("== the new data's hybrid labels against the reference (unseen by every PPM)")
    for name, row in outcome.items():
        print(f"{name:<10s} label accuracy {row['label_accuracy']:.4f} on {row['n_scored']} scored pairs, "
              f"{row['n_human']} human labels")
    print("one split, no interval: `make bench-rounds` repeats it over random splits")
    write_json_atomic(args.out, {"history": len(history), "new": len(new), "total_budget": total, **outcome})
    print(f"wrote {args.out}")


def rounds_parser(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    add_mixes_arguments(parser)
    add_label_arguments(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", default=0.25, type=float, help="share of the new pairs labelled by humans")
    parser.add_argument("--history-fraction", type=float, default=0.3,
                        help="share of the data already labelled when the first round starts")
    parser.add_argument("--strategy", default="topk")
    parser.add_argument("--out", default="out/rounds.json")
    parser.set_defaults(run=cmd_rounds)


PARSERS = {"rounds": rounds_parser}
