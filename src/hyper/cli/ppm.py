"""`hyper ppm list|show|fit|export|import|promote`: the performance prediction models as a team
manages them: what versions exist and how skilled each is, fitting from recorded runs, moving a
PPM between deployments as a file, and pinning the version Route uses."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hyper.api.clients import PPMClient
from hyper.cli.common import error_skill_text
from hyper.core.atomic_files import write_json_atomic
from hyper.core.errors import InvalidArgument
from hyper.core.settings import Settings
from hyper.method.error_models import KIND as ERROR_MODEL
from hyper.method.performance_models import KINDS, PerformanceModel, artifact_digest


def skill_cell(info) -> str:
    """A PPM's cross-validated Spearman, or an error model's cross-validated AUC."""
    if info.kind == ERROR_MODEL:
        auc = info.error_skill.auc
        return f"AUC {auc.mean:.2f} [{auc.ci_low:.2f}, {auc.ci_high:.2f}]"
    skill = info.skill
    return f"{skill.spearman:+.2f} [{skill.ci_low:+.2f}, {skill.ci_high:+.2f}]"


def cmd_list(args, settings: Settings) -> None:
    versions = PPMClient.connect(settings).list_models()
    print(f"  {'model':<16s} {'version':<14s} {'kind':<11s} {'target':<15s} {'runs':>5s}  {'skill (CV)':<22s} "
          "created               experiments")
    for info in versions:
        mark = "*" if info.promoted else " "
        origin = f" (imported from {info.imported_from})" if info.imported_from else ""
        print(f"{mark} {info.model:<16s} {info.version:<14s} {info.kind:<11s} {info.target:<15s} {info.n_runs:>5d}  "
              f"{skill_cell(info):<22s} {info.created_at}  {','.join(info.experiments)}{origin}")
    print(f"{len(versions)} versions; * = promoted (what Route uses unless it names a version; "
          "without one, the latest)")


def feature_gains(artifact: dict, top: int) -> list[tuple[str, float]]:
    """Per feature: the predicted change from routing to humans one instance (per 1,000) that has
    only that feature, the paper's per-tag analysis; the largest first."""
    model = PerformanceModel.from_json(artifact)
    gains = model.gains(np.eye(len(model.feature_names)))
    order = np.argsort(-gains)[:top]
    return [(model.feature_names[k], float(gains[k])) for k in order]


def show_error_model(info, artifact: dict) -> None:
    """An error model: its skill, and what it gains over random at a few budgets (cross-fitted)."""
    print(f"model          {info.model} {info.version}{'  (promoted)' if info.promoted else ''}")
    print(f"kind           error model of label_{artifact['ai_source']}'s errors, {len(info.feature_names)} features "
          f"and the judge's confidence")
    print(f"skill          {error_skill_text(info.error_skill)}")
    for name, value in sorted(info.metrics.items()):
        print(f"metric         {name} = {value:.4g}")
    print("gain vs random (label accuracy, cross-fitted on its history)")
    for strategy, table in artifact["gains"].items():
        shown = [k for k, b in enumerate(table["budgets"]) if round(b * 100) in (10, 25, 50)]
        cells = [f"{table['budgets'][k]:.0%}: {table['mean'][k]:+.3f} [{table['ci_low'][k]:+.3f}, "
                 f"{table['ci_high'][k]:+.3f}]" for k in shown]
        print(f"               {strategy:<12s} " + "  ".join(cells))


def cmd_show(args, settings: Settings) -> None:
    ppm = PPMClient.connect(settings)
    info = ppm.info(args.model, args.version)
    artifact = ppm.artifact(args.model, info.version)
    if info.kind == ERROR_MODEL:
        show_error_model(info, artifact)
        return
    print(f"model          {info.model} {info.version}{'  (promoted)' if info.promoted else ''}")
    print(f"kind           {info.kind}, predicts {info.target}, {len(info.feature_names)} features")
    print(f"skill          cross-validated Spearman {skill_cell(info)} over {info.n_runs} runs"
          + ("" if info.skill.ci_low > 0 else "  (no demonstrated skill: the interval includes 0)"))
    print(f"runs           {info.n_runs} from experiment(s) {', '.join(info.experiments) or '(imported)'}")
    if info.imported_from:
        print(f"imported from  {info.imported_from}")
    print(f"features       {info.feature_set_version or '(not recorded by its runs)'}")
    print(f"created        {info.created_at}")
    for name, value in sorted(info.metrics.items()):
        print(f"metric         {name} = {value:.4g}")
    print("largest gains  (predicted change when one more pair per 1,000 with only this feature goes to humans)")
    for name, gain in feature_gains(artifact, args.top):
        print(f"               {name:<48s} {gain:+.5f}")


def cmd_fit(args, settings: Settings) -> None:
    info = PPMClient.connect(settings).fit(args.model, args.kind, args.experiment, args.seed, args.cv_folds)
    print(f"fitted         {info.model} {info.version} ({info.kind}, {info.target}) on {info.n_runs} runs of "
          f"{', '.join(info.experiments) or 'every experiment'}")
    print(f"skill          cross-validated Spearman {skill_cell(info)}")


def cmd_export(args, settings: Settings) -> None:
    ppm = PPMClient.connect(settings)
    artifact = ppm.artifact(args.model, args.version)
    write_json_atomic(args.out, {"artifact": artifact, "sha256": artifact_digest(artifact)})
    print(f"exported       {artifact['model']} {artifact['version']} -> {args.out}")


def cmd_import(args, settings: Settings) -> None:
    try:
        text = Path(args.file).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidArgument("file", f"{args.file}: {error}") from None
    info = PPMClient.connect(settings).import_model(args.model, text)
    print(f"imported       {info.imported_from} as {info.model} {info.version}; skill {skill_cell(info)}")
    print(f"               `hyper ppm promote {info.model} {info.version}` makes Route use it")


def cmd_promote(args, settings: Settings) -> None:
    info = PPMClient.connect(settings).promote(args.model, "" if args.unpin else args.version)
    state = "promoted" if info.promoted else "no version pinned: the latest"
    print(f"{info.model}: Route uses {info.version} ({state})")


def ppm_parser(parser: argparse.ArgumentParser) -> None:
    ppm = parser.add_subparsers(dest="ppm_command", required=True)
    ppm.add_parser("list", help="every version of every PPM with its skill").set_defaults(run=cmd_list)
    show = ppm.add_parser("show", help="one version: skill, runs, the features whose human labels gain most")
    show.add_argument("model", nargs="?", default="default")
    show.add_argument("--version", default="", help="default: the promoted version, else the latest")
    show.add_argument("--top", type=int, default=10)
    show.set_defaults(run=cmd_show)
    fit = ppm.add_parser("fit", help="fit a new version from the runs of one or more experiments")
    fit.add_argument("--experiment", action="append", default=[], required=True, help="repeatable")
    fit.add_argument("--model", default="default")
    fit.add_argument("--kind", choices=KINDS, default="linear")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--cv-folds", type=int, default=0, help="default 5")
    fit.set_defaults(run=cmd_fit)
    export = ppm.add_parser("export", help="write a version to a file (with its checksum)")
    export.add_argument("model", nargs="?", default="default")
    export.add_argument("--version", default="")
    export.add_argument("--out", required=True)
    export.set_defaults(run=cmd_export)
    imported = ppm.add_parser("import", help="store an exported PPM as the next version")
    imported.add_argument("file")
    imported.add_argument("--model", default="", help="default: the name it was exported under")
    imported.set_defaults(run=cmd_import)
    promote = ppm.add_parser("promote", help="pin the version Route uses")
    promote.add_argument("model")
    promote.add_argument("version", nargs="?", default="")
    promote.add_argument("--unpin", action="store_true", help="follow the latest version again")
    promote.set_defaults(run=cmd_promote)


PARSERS = {"ppm": ppm_parser}
