"""`hyper train | judge train`: the training loop that produces a PPM over the running services,
and the CPU AI judge that the tagger's Annotate uses."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from hyper.api.clients import PPMClient, TaggerClient
from hyper.api.messages import ErrorModelSkillBody, Skill
from hyper.cli.common import (
    add_data_arguments,
    add_label_arguments,
    add_mixes_arguments,
    add_paid_source_argument,
    error_skill_text,
    label_roles,
    read_data,
    skill_text,
)
from hyper.core.errors import InvalidArgument
from hyper.core.schema import Dataset
from hyper.core.settings import Settings
from hyper.judges.saved_judge import save_judge
from hyper.judges.training import train_judge
from hyper.method.embeddings import SentenceEmbedder
from hyper.method.reward_pairs import encode_pairs
from hyper.method.run_spec import ProxySpec
from hyper.workflows.training_loop import LoopConfig, LoopResult, run_loop


def loop_config(args: argparse.Namespace) -> LoopConfig:
    return LoopConfig(n_candidates=args.mixes, target=args.target, seed=args.seed, model=args.ppm_model or "default",
                      kind=args.ppm_kind, roles=label_roles(args), paid_sources=tuple(args.paid_source))


def print_training(result: LoopResult) -> None:
    for k, note in enumerate(result.notes):
        print(f"{'labels' if k == 0 else '':<11s} {note}")
    print(f"{'AI labels':<11s} {result.ai_labels}; they agree with the reference on "
          f"{result.judge_agreement:.1%} of the pool's scored pairs")
    print(f"{'mixes':<11s} {result.n_runs} scored by {result.target}: 100% human "
          f"{result.all_human_score:.4f}, 100% AI {result.all_ai_score:.4f}")
    print(f"{'PPM':<11s} {result.ppm_version}: {skill_text(Skill(**result.ppm_skill))}")
    if result.error_model:
        skill = ErrorModelSkillBody.model_validate(result.error_model_skill)
        print(f"{'error model':<11s} {result.error_model}: {error_skill_text(skill)}")


def train(dataset: Dataset, config: LoopConfig, settings: Settings, as_json: bool = False) -> LoopResult:
    result = run_loop(dataset, config, settings, TaggerClient.connect(settings), PPMClient.connect(settings))
    if as_json:
        print(json.dumps(asdict(result), indent=1))
    else:
        print_training(result)
    return result


def cmd_train(args: argparse.Namespace, settings: Settings) -> None:
    train(read_data(args), loop_config(args), settings, args.json)


def cmd_judge_train(args: argparse.Namespace, settings: Settings) -> None:
    """Trains the CPU AI judge on a file's human labels and saves it where the tagger looks."""
    labelled = [i for i in read_data(args).instances if "human" in i.labels]
    if not labelled:
        raise InvalidArgument("data", "has no human labels to train a judge on")
    embedder = SentenceEmbedder(settings.embedding_model, settings.cache_dir)
    phi_a, phi_b = encode_pairs(labelled, embedder, show_progress=True)
    judge = train_judge(phi_a, phi_b, [i.labels["human"] for i in labelled], ProxySpec(seed=args.seed),
                        embedder.model_name)
    save_judge(judge, settings.judge_file)
    print(f"judge trained on {len(labelled)} pairs; cross-fitted agreement with humans "
          f"{judge.agreement_with_human:.1%}; saved to {settings.judge_file}")


def train_parser(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    add_mixes_arguments(parser)
    add_label_arguments(parser)
    add_paid_source_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(run=cmd_train)


def judge_parser(parser: argparse.ArgumentParser) -> None:
    judge = parser.add_subparsers(dest="judge_command", required=True)
    trainer = judge.add_parser("train", help="train the judge on a file's human labels")
    add_data_arguments(trainer)
    trainer.set_defaults(run=cmd_judge_train)


PARSERS = {"train": train_parser, "judge": judge_parser}
