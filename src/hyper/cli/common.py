"""What the command groups share: the flags that name a dataset, its label roles and a Route's
options, reading the dataset they name, and how results are printed."""

from __future__ import annotations

import argparse
import sys

from hyper.api.messages import STRATEGIES, RouteOptions
from hyper.core.schema import Dataset
from hyper.data import dataset_files
from hyper.data.dataset_files import parse_columns
from hyper.data.label_sources import LabelRoles
from hyper.method.performance_models import KINDS, TARGETS


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="JSONL, JSONL.gz or Parquet file")
    parser.add_argument("--format", default="auto",
                        help="auto, hh-rlhf, multipref-raw, multipref-features or plain")
    parser.add_argument("--column", action="append", default=[], metavar="FIELD=COLUMN",
                        help="read FIELD from the file's COLUMN (repeatable)")
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="drop bad rows (and report their count) instead of refusing the file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ppm-model", default="")


def read_data(args: argparse.Namespace, path: str | None = None) -> Dataset:
    """The dataset the flags name (or `path`, read the same way); the values read with a
    coercion are said, by row."""
    dataset = dataset_files.read_dataset(path or args.data, args.format, parse_columns(args.column),
                                         args.skip_bad_rows)
    for note in dataset.notes:
        print(f"note: {note}", file=sys.stderr)
    return dataset


def add_judge_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--judge", action="append", default=[], metavar="SOURCE",
                        help="another judge whose agreement with the AI label (and its _swapped "
                             "twin's) is the judge's confidence; repeatable")


def add_label_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--human-source", default="human",
                        help="the label_<source> that plays the paid human (default %(default)s)")
    parser.add_argument("--ai-source", default="ai",
                        help="the label_<source> of the AI judge; without any, a judge is trained "
                             "on the human labels (default %(default)s)")
    parser.add_argument("--reference", action="append", default=[], metavar="SOURCE",
                        help="label source(s) that score the others, their strict majority when "
                             "several (default: the human source, or the other numbered "
                             "annotators when it is one of them); repeatable")
    add_judge_argument(parser)


def label_roles(args: argparse.Namespace) -> LabelRoles:
    return LabelRoles(human=args.human_source, ai=args.ai_source, reference=tuple(args.reference),
                      judges=tuple(args.judge))


def _option(name: str) -> dict:
    """argparse default and help of a Route option, from its one typed source."""
    field = RouteOptions.model_fields[name]
    return {"default": field.default, "help": (field.description or "") + " (default %(default)s)"}


def add_route_arguments(parser: argparse.ArgumentParser, budget_required: bool = True, labels: bool = True) -> None:
    budget = parser.add_mutually_exclusive_group(required=budget_required)
    budget.add_argument("--budget", help="fraction (0.25, 25%%), count (500) or money ($1200)")
    budget.add_argument("--target-accuracy", type=float, help="the guaranteed mode instead of a budget: the "
                        "smallest budget whose label accuracy reaches this with probability 1 - risk")
    parser.set_defaults(budget="1.0")
    parser.add_argument("--risk", type=float, **_option("risk"))
    parser.add_argument("--error-model", default="", help=RouteOptions.model_fields["error_model"].description)
    parser.add_argument("--exploration", type=float, default=None,
                        help=RouteOptions.model_fields["exploration_fraction"].description)
    parser.add_argument("--allow-judge-calls", action="store_true",
                        help=RouteOptions.model_fields["allow_judge_calls"].description)
    parser.add_argument("--strategy", choices=STRATEGIES, default=_option("strategy")["default"],
                        help="; ".join(f"{name}: {what}" for name, what in STRATEGIES.items()))
    parser.add_argument("--candidates", type=int, **_option("n_candidates"))
    parser.add_argument("--epsilon", type=float, **_option("epsilon"))
    parser.add_argument("--interval", type=float, **_option("interval_level"))
    parser.add_argument("--points", type=int, **_option("curve_points"))
    parser.add_argument("--source", action="append", default=[], metavar="NAME[=COST]",
                        help="a paid source (repeatable; default human=1)")
    parser.add_argument("--human-cost-base", type=float, default=0.0)
    parser.add_argument("--human-cost-per-1k-tokens", type=float, default=0.0,
                        help="human cost from length: base + this * tokens / 1000")
    parser.add_argument("--ppm-version", default="")
    if labels:  # (the demo takes them with the training loop's label roles)
        parser.add_argument("--ai-source", default="",
                            help="the label_<source> of the AI judge: pairs without it go to humans")
        add_judge_argument(parser)
    parser.add_argument("--require-skill", action="store_true",
                        help="refuse to route with a PPM whose skill interval includes 0")
    parser.add_argument("--json", action="store_true", help="print the response as JSON")
    parser.add_argument("--out", default="", help="also write the result to this JSON file")
    parser.add_argument("--page-size", type=int, default=0,
                        help="assignments per page fetched from the router (default 10,000; at most 100,000)")


def add_mixes_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mixes", type=int, default=400,
                        help="candidate mixes scored for the PPM (default %(default)s)")
    parser.add_argument("--ppm-kind", default="linear", choices=KINDS)
    parser.add_argument("--target", default="label_accuracy", choices=TARGETS,
                        help="what scores a mix: its labels' accuracy against the reference, or "
                             "a proxy reward model's accuracy on a held-out split (the paper's)")


def add_paid_source_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--paid-source", action="append", default=[], metavar="SOURCE",
                        help="a further paid label source beside the human (e.g. a costlier, stronger judge): "
                             "the PPM gets columns for it and Route can spend a money budget across them "
                             "(--source human=COST --source SOURCE=COST); repeatable")


def print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"WARNING: {warning}\n")


def skill_text(skill) -> str:
    """A PPM's skill (a Skill model or message) in words."""
    verdict = "" if skill.ci_low > 0 else "  (no demonstrated skill: the interval includes 0)"
    return (f"cross-validated Spearman {skill.spearman:.2f} [{skill.ci_low:.2f}, "
            f"{skill.ci_high:.2f}] over {skill.n_runs} runs{verdict}")


def error_skill_text(skill) -> str:
    """An error model's skill (an ErrorModelSkillBody or its message) in words."""
    auc, ece = skill.auc, skill.calibration_error
    verdict = "" if auc.ci_low > 0.5 else "  (no demonstrated skill: the AUC's interval includes 0.5)"
    return (f"cross-validated AUC {auc.mean:.2f} [{auc.ci_low:.2f}, {auc.ci_high:.2f}], calibration error "
            f"{ece.mean:.3f} [{ece.ci_low:.3f}, {ece.ci_high:.3f}] over {skill.n_pairs} pairs{verdict}")
