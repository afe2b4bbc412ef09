"""`hyper jobs render | submit | status`: rm-trainer Jobs as Kubernetes manifests, run locally or
in a cluster, and the runs they recorded in ppm."""

from __future__ import annotations

import argparse
from pathlib import Path

from hyper.api.clients import PPMClient
from hyper.core.settings import Settings
from hyper.infra.training_jobs import (
    JobFailed,
    JobSettings,
    job_settings,
    render_spec,
    run_local,
    submit_kubernetes,
    write_manifests,
)


def flag_job_settings(args: argparse.Namespace) -> JobSettings:
    flags = {"accelerator": args.accelerator, "image": args.image, "namespace": args.namespace,
             "local_workers": args.workers, "tpu_topology": args.tpu_topology, "tpu_hosts": args.tpu_hosts,
             "tpu_chips": args.tpu_chips}
    return job_settings(**{k: v for k, v in flags.items() if v is not None})


def manifests(args: argparse.Namespace, settings: JobSettings) -> list[dict]:
    return [render_spec(Path(spec), args.spec_path_in_cluster or str(Path(spec).resolve()), settings)
            for spec in args.specs]


def cmd_render(args: argparse.Namespace, settings: Settings) -> None:
    """Writes one Job (a JobSet for a distributed spec) manifest per spec, for `kubectl create -f DIR`."""
    for path in write_manifests(manifests(args, flag_job_settings(args)), Path(args.out)):
        print(path)


def cmd_submit(args: argparse.Namespace, settings: Settings) -> None:
    jobs = flag_job_settings(args)
    if args.backend == "kubernetes":
        rendered = manifests(args, jobs)
        for manifest, name in zip(rendered, submit_kubernetes(rendered, jobs.namespace), strict=True):
            print(f"created {manifest['kind'].lower()} {name} in {jobs.namespace}")
        return
    logs = settings.home.resolve() / "logs" / "jobs"
    codes = run_local([Path(s) for s in args.specs], jobs.local_workers, logs)
    for spec, code in zip(args.specs, codes, strict=True):
        print(f"{spec}: {'succeeded' if code == 0 else f'failed (exit {code})'}")
    if any(codes):
        raise JobFailed(f"{sum(1 for c in codes if c)} of {len(codes)} jobs failed; logs in {logs}")


def cmd_status(args: argparse.Namespace, settings: Settings) -> None:
    """Runs recorded in ppm, with their state and score."""
    runs = PPMClient.connect(settings).list_runs(args.experiment)
    print(f"{'run':<44s} {'state':<10s} {'score':>7s} {'human':>6s}  reason")
    for run in runs:
        score = f"{run.eval_score:.4f}" if run.state == "succeeded" else ""
        print(f"{run.run_id[:44]:<44s} {run.state:<10s} {score:>7s} {run.n_human:6d}  "
              f"{run.failure_reason[:60]}")
    states = [r.state for r in runs]
    print(f"{len(runs)} runs: {states.count('succeeded')} succeeded, {states.count('failed')} failed")


def _spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("specs", nargs="+", help="run spec files (JSON)")
    parser.add_argument("--accelerator", choices=("cpu", "gpu", "tpu"),
                        help="node pool and image (the accelerator's, unless --image)")
    parser.add_argument("--image")
    parser.add_argument("--tpu-topology", help="the TPU slice's topology, e.g. 4x4")
    parser.add_argument("--tpu-hosts", type=int, help="TPU VMs in the slice (distributed specs: >= 2)")
    parser.add_argument("--tpu-chips", type=int, help="TPU chips per host")
    parser.add_argument("--namespace")
    parser.add_argument("--workers", type=int, help="local backend: jobs at a time")
    parser.add_argument("--spec-path-in-cluster", default="",
                        help="where the spec lies on the cluster's shared volume")


def jobs_parser(parser: argparse.ArgumentParser) -> None:
    jobs = parser.add_subparsers(dest="jobs_command", required=True)
    render = jobs.add_parser("render", help="write Job manifests for kubectl")
    _spec_arguments(render)
    render.add_argument("--out", default="out/jobs")
    render.set_defaults(run=cmd_render)
    submit = jobs.add_parser("submit", help="run specs locally or as Kubernetes Jobs")
    _spec_arguments(submit)
    submit.add_argument("--backend", choices=("local", "kubernetes"), default="local")
    submit.set_defaults(run=cmd_submit)
    status = jobs.add_parser("status", help="runs recorded in ppm")
    status.add_argument("--experiment", default="")
    status.set_defaults(run=cmd_status)


PARSERS = {"jobs": jobs_parser}
