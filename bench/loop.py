"""The data team's whole loop on PandaLM, every step a `hyper` (or `rm-trainer`) command run as a
user runs it, timed, with what it printed: `make bench-loop` -> out/bench/loop.json and a table.

1. judge: a copy of PandaLM with every label removed, judged through the tagger's OpenAI-compatible
   backend against a real local server (vLLM's OpenAI entry point, CPU build, serving a tiny
   random Llama made here: its verdicts are noise, its throughput and the plumbing are real),
   once per concurrency level;
2. route: `hyper demo` trains a PPM on 70% of PandaLM (annotator 1 as the human, gpt-3.5-turbo's
   real verdicts as the judge) and routes the other 30% at budget 0.25;
3. hand-off: the human-routed pairs exported as Label Studio tasks and as CSV; the CSV comes
   back labelled with annotator 1's column (as if the tool had collected it) and is imported;
4. final dataset: the batch with each pair's label from its route, as TRL JSONL and a `datasets`
   directory; its label accuracy against the reference (annotators 2 + 3), beside the judge's;
5. final RM: `rm-trainer final` (proxy) on the hybrid export and on the all-judge labels of the
   same pairs, both scored on the 70% history's human labels.

    python -m bench.loop [--pairs 999] [--concurrency 1 4 16]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from harness.judge_server import MODEL_NAME, free_port, judge_server
from hyper.data import dataset_files
from hyper.data.label_sources import strict_majority

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data" / "pandalm-testset.jsonl.gz"
OUT = Path("out/bench/loop")
ROLES = ["--human-source", "annotator1", "--ai-source", "gpt-3.5-turbo", "--judge", "pandalm-7b"]

def run(steps: list[dict], name: str, args: list[str], env: dict) -> str:
    """One command as a user types it; its output is kept with the step."""
    command = args if args[0] == "rm-trainer" else ["hyper", *args]
    print(f"\n$ {' '.join(command)}", flush=True)
    start = time.monotonic()
    python = [sys.executable, "-m", "hyper_rm_trainer.job" if args[0] == "rm-trainer" else "hyper.cli"]
    done = subprocess.run([*python, *(args[1:] if args[0] == "rm-trainer" else args)], env=env,
                          capture_output=True, text=True, timeout=3600)
    print(done.stdout, end="", flush=True)
    if done.returncode:
        raise SystemExit(f"{name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    steps.append({"step": name, "command": " ".join(command), "seconds": round(time.monotonic() - start, 1),
                  "output": done.stdout})
    return done.stdout


def unlabelled_copy(path: Path, n: int) -> Path:
    rows = [{"id": i.id, "prompt": i.prompt, "response_a": i.response_a, "response_b": i.response_b}
            for i in dataset_files.read_dataset(DATA).instances[:n]]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def judge_step(steps: list[dict], home: Path, n_pairs: int, levels: list[int]) -> list[dict]:
    corpus = [i.prompt[:500] for i in dataset_files.read_dataset(DATA).instances[:300]]
    data = unlabelled_copy(home / "pandalm-unlabelled.jsonl", n_pairs)
    results = []
    with judge_server(home, corpus) as url:
        for concurrency in levels:
            env = {**os.environ, "HYPER_HOME": str(home / f"home-{concurrency}"), "HYPER_JUDGE_BACKEND": "openai",
                   "HYPER_JUDGE_URL": url, "HYPER_JUDGE_MODEL": MODEL_NAME,
                   "HYPER_JUDGE_CONCURRENCY": str(concurrency), **ports_env()}
            run(steps, f"up (judge concurrency {concurrency})", ["up"], env)
            try:
                output = run(steps, f"annotate (concurrency {concurrency})",
                             ["annotate", str(data), "--out", str(home / f"judged-{concurrency}.jsonl"), "--source",
                              MODEL_NAME, "--chunk", str(max(32, 4 * concurrency))], env)
            finally:
                run(steps, "down", ["down"], env)
            rate = float(re.search(r"([\d.]+) pairs/s", output).group(1))
            requests = re.search(r"requests\s+(\d+) \((\d+) retries\)", output)
            tokens = re.search(r"tokens\s+(\d+) prompt, (\d+) completion", output)
            results.append({"concurrency": concurrency, "pairs": n_pairs, "pairs_per_second": rate,
                            "requests": int(requests.group(1)), "retries": int(requests.group(2)),
                            "prompt_tokens": int(tokens.group(1)), "completion_tokens": int(tokens.group(2))})
    return results


def ports_env() -> dict[str, str]:
    names = ("TAGGER_PORT", "PPM_PORT", "ROUTER_PORT", "TAGGER_METRICS_PORT", "PPM_METRICS_PORT",
             "ROUTER_METRICS_PORT")
    return {f"HYPER_{name}": str(free_port()) for name in names}


def fill_from_annotator(tasks: Path, labelled: Path, batch: dict) -> None:
    """The spreadsheet as annotators return it: annotator 1's label on every task."""
    with open(tasks, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row.update(annotator="annotator1", label=batch[row["item_id"]].labels["annotator1"])
    with open(labelled, "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def label_accuracy(path: Path, batch: dict) -> dict:
    """Share of the exported rows whose label matches the reference (annotators 2 + 3)."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    scored = [(r, strict_majority([batch[r["id"]].labels.get(s) for s in ("annotator2", "annotator3")]))
              for r in rows]
    scored = [(r, ref) for r, ref in scored if ref is not None]
    return {"n_scored": len(scored), "accuracy": sum(r["label"] == ref for r, ref in scored) / len(scored)}


def loop_steps(steps: list[dict], home: Path) -> dict:
    env = {**os.environ, "HYPER_HOME": str(home / "home"), **ports_env()}
    route = home / "routing.json"
    run(steps, "route (demo: train on 70%, route 30%)",
        ["demo", str(DATA), *ROLES, "--budget", "0.25", "--out", str(route)], env)
    summary = json.loads(route.read_text())
    batch_path = summary["dataset_ref"]["path"]
    batch = {i.id: i for i in dataset_files.read_dataset(batch_path).instances}
    run(steps, "tasks export (Label Studio)", ["tasks", "export", str(route), "--format", "label-studio",
                                              "--out", str(home / "label-studio")], env)
    run(steps, "tasks export (CSV)", ["tasks", "export", str(route), "--format", "csv", "--out", str(home)], env)
    fill_from_annotator(home / "tasks.csv", home / "labelled.csv", batch)
    run(steps, "tasks import", ["tasks", "import", str(home / "labelled.csv"), str(route),
                                "--out", str(home / "human.jsonl")], env)
    export = ["export", batch_path, "--route", str(route), "--labels", str(home / "human.jsonl")]
    run(steps, "export (datasets)", [*export, "--format", "hf", "--out", str(home / "final-hf")], env)
    run(steps, "export (TRL)", [*export, "--format", "trl", "--out", str(home / "final.jsonl")], env)
    run(steps, "export (judge only, same pairs)", ["export", batch_path, "--label-source", "gpt-3.5-turbo",
                                                   "--format", "trl", "--out", str(home / "judge-only.jsonl")], env)
    history = str(Path(batch_path).with_name("history.jsonl"))
    results = {}
    for name, data in (("hybrid", "final.jsonl"), ("judge_only", "judge-only.jsonl")):
        run(steps, f"final RM ({name})", ["rm-trainer", "final", "--data", str(home / data), "--eval", history,
                                          "--out", str(home / f"rm-{name}")], env)
        results[name] = {"label_accuracy": label_accuracy(home / data, batch),
                         "rm": json.loads((home / f"rm-{name}" / "result.json").read_text())}
    return {"route": {k: summary[k] for k in ("route_id", "n_instances", "n_human", "predicted_score",
                                              "predicted_lower", "predicted_upper", "ppm_version")}, "final": results}


def print_table(report: dict) -> None:
    print("\njudge throughput (tiny Llama on vLLM's CPU OpenAI server, this machine)")
    print(f"{'concurrency':>11s} {'pairs':>6s} {'pairs/s':>8s} {'requests':>9s} {'retries':>8s} {'tokens in':>10s}")
    for row in report["judge"]:
        print(f"{row['concurrency']:>11d} {row['pairs']:>6d} {row['pairs_per_second']:>8.2f} {row['requests']:>9d} "
              f"{row['retries']:>8d} {row['prompt_tokens']:>10d}")
    print(f"\n{'step':<44s} {'seconds':>8s}")
    for step in report["steps"]:
        print(f"{step['step']:<44s} {step['seconds']:>8.1f}")
    print(f"\n{'final dataset':<12s} {'label acc vs reference':>24s} {'RM acc on history':>18s}")
    for name, result in report["loop"]["final"].items():
        accuracy = result["label_accuracy"]
        print(f"{name:<12s} {accuracy['accuracy']:>16.3f} (n={accuracy['n_scored']}) "
              f"{result['rm']['eval']['overall']:>18.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=999, help="PandaLM pairs to judge")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    steps: list[dict] = []
    report = {"judge": judge_step(steps, OUT, args.pairs, args.concurrency)}
    report["loop"] = loop_steps(steps, OUT)
    report["steps"] = steps
    report["machine"] = f"{os.cpu_count()} cores, no GPU"
    Path("out/bench/loop.json").write_text(json.dumps(report, indent=1))
    print_table(report)
    print("\nwrote out/bench/loop.json")


if __name__ == "__main__":
    main()
