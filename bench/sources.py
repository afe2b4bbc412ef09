"""More than two sources: a money budget spent across the human, a stronger paid judge and a
free judge, against two-source routes at the same money. Every step is a `hyper` command
against the local services: `make bench-sources` -> out/bench/sources.json and a table.

PandaLM, split as the demo splits it (70% history to train on, 30% batch to route): the human
is annotator 1 at 1.00 a pair, gpt-3.5-turbo a paid judge at 0.10 a pair, PandaLM-7B (self-
hosted) the free judge. At each amount of money M:
- three sources: a PPM over all three (`hyper train --paid-source gpt-3.5-turbo`), Route with
  `--source human=1 --source gpt-3.5-turbo=0.1 --budget $M`;
- human + PandaLM-7B: M human labels, the rest to the free judge;
- human + gpt-3.5-turbo: gpt-3.5-turbo labels every pair not sent to humans, so humans get what
  is left of M after its cost: (M - 0.1 N) / 0.9 pairs.
Each is scored by the label accuracy of the batch's hybrid labels against the reference
(annotators 2 + 3), which no PPM sees; differences are paired over the batch's pairs (95%
bootstrap over pairs; one split, so the split's own luck is not in the interval).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from bench.loop import DATA, ports_env, run
from hyper.core.stats import mean_interval, paired_difference
from hyper.data import dataset_files
from hyper.data.label_sources import strict_majority
from hyper.workflows.demo import split_history_batch

OUT = Path("out/bench/sources")
HUMAN, STRONG, FREE = "annotator1", "gpt-3.5-turbo", "pandalm-7b"
STRONG_COST = 0.1
MONEY = (20.0, 40.0, 75.0)


def train(steps: list[dict], env: dict, history: Path, model: str, ai: str, paid: list[str]) -> None:
    args = ["train", str(history), "--human-source", HUMAN, "--ai-source", ai, "--mixes", "400", "--ppm-model", model]
    run(steps, f"train {model}", [*args, *[a for source in paid for a in ("--paid-source", source)]], env)


def route(steps: list[dict], env: dict, batch: Path, name: str, args: list[str]) -> dict[str, str]:
    out = OUT / f"{name}.json"
    run(steps, f"route {name}", ["route", str(batch), "--strategy", "optimize", "--out", str(out), *args], env)
    return {a["id"]: a["route"] for a in json.loads(out.read_text())["assignments"]}


def correct(batch: list, routes: dict[str, str], free: str) -> np.ndarray:
    """Per scored pair: whether the label of its route's source matches the reference."""
    label_of = {"human": HUMAN, STRONG: STRONG, "ai": free}
    scored = []
    for instance in batch:
        reference = strict_majority([instance.labels.get(s) for s in ("annotator2", "annotator3")])
        if reference is not None:
            scored.append(instance.labels.get(label_of[routes[instance.id]]) == reference)
    return np.array(scored, dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--money", type=float, nargs="+", default=list(MONEY), help="budgets in dollars")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HYPER_HOME": str(OUT / "home"), **ports_env()}
    history, batch_path = split_history_batch(dataset_files.read_dataset(DATA), 0.3, 0, OUT)
    batch = dataset_files.read_dataset(batch_path).instances
    n = len(batch)
    steps: list[dict] = []
    run(steps, "up", ["up"], env)
    try:
        train(steps, env, history, "three", FREE, [STRONG])
        train(steps, env, history, "human-free", FREE, [])
        train(steps, env, history, "human-strong", STRONG, [])
        rows = []
        for money in args.money:
            three = route(steps, env, batch_path, f"three-{money:g}", [
                "--ppm-model", "three", "--ai-source", FREE, "--source", "human=1",
                "--source", f"{STRONG}={STRONG_COST}", "--budget", f"${money:g}"])
            human_free = route(steps, env, batch_path, f"human-free-{money:g}", [
                "--ppm-model", "human-free", "--ai-source", FREE, "--budget", str(int(money))])
            n_human = max(0, int((money - STRONG_COST * n) / (1 - STRONG_COST)))
            human_strong = route(steps, env, batch_path, f"human-strong-{money:g}", [
                "--ppm-model", "human-strong", "--ai-source", STRONG, "--budget", str(n_human)]) if n_human else None
            outcome = {"three sources": correct(batch, three, FREE),
                       "human + free judge": correct(batch, human_free, FREE)}
            if human_strong is not None:
                outcome["human + paid judge"] = correct(batch, human_strong, STRONG)
            for name, values in outcome.items():
                row = {"money": money, "route": name, "label_accuracy": mean_interval(values).to_json()}
                if name != "three sources":
                    row["three_minus_this"] = paired_difference(outcome["three sources"][None],
                                                                values[None]).to_json()
                rows.append(row)
            rows.append({"money": money, "route": "three sources: pairs per source",
                         "counts": {s: sum(r == s for r in three.values()) for s in ("human", STRONG, "ai")}})
    finally:
        run(steps, "down", ["down"], env)
    Path("out/bench/sources.json").write_text(json.dumps({"n_batch": n, "strong_cost": STRONG_COST, "rows": rows,
                                                           "steps": steps}, indent=1))
    print(f"\n{'money':>6s} {'route':<22s} {'label acc':>9s} {'three sources - this [95% CI]':>32s}")
    for row in rows:
        if "counts" in row:
            print(f"{row['money']:6g} {'  (three: ' + str(row['counts']) + ')'}")
            continue
        diff = row.get("three_minus_this")
        cell = f"{diff['mean']:+.4f} [{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]" if diff else ""
        print(f"{row['money']:6g} {row['route']:<22s} {row['label_accuracy']['mean']:9.4f} {cell:>32s}")
    print("\nwrote out/bench/sources.json")


if __name__ == "__main__":
    main()
