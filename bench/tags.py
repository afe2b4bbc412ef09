"""Do the descriptive tags mean what they say? The CPU tagger against every ground truth here,
today's tag set side by side with the one it replaced (`--baseline`, read with `git show`).

Ground truths:
- `data/tag-test-set.jsonl`: 275 prompts (100 HH-RLHF red-team, 100 PandaLM, the 75 distinct
  MT-Bench questions) labelled by hand on every dimension, 40 of them twice (the agreement of two
  labellers is the ceiling to read the tagger's agreement against). How they were labelled:
  docs/tagger.md.
- Red-team vs benign: an HH-RLHF harmless-base prompt was written to elicit harm, a PandaLM or
  MT-Bench one was not; the "any concern" score should rank the first above the second (AUC).
- Known categories: PandaLM prompts name the app they were modelled on; for the apps whose
  field is unambiguous (APP_SUBJECTS) the right subject is known.

Test and development prompts are disjoint: the prototypes (tag_prototypes.json) were written
and revised looking at the development prompts only (HH-RLHF and PandaLM prompts outside the
test set); every figure in the table is on the test set.

    python -m bench.tags                 # out/bench/tags.json and a table
    python -m bench.tags --dev           # the same on the development prompts (for revising)
    python -m bench.tags --backend vllm  # the paper's way, one constrained prompt per instance to the
                                         # vLLM model HYPER_LLM_MODEL, against today's CPU tags
                                         # (out/bench/tags-vllm.json)
    python -m bench.tags --backend openai  # the same prompt to the judge's endpoint (HYPER_JUDGE_URL,
                                           # HYPER_JUDGE_MODEL; out/bench/tags-openai.json)
    python -m bench.tags --backend static  # the tags on the distilled static sentence model
                                           # (HYPER_EMBEDDING_RUNTIME=static): centred centroids
                                           # against nearest prototypes (out/bench/tags-static.json)

An LLM's one reply has no continuous score behind it: its "any concern" AUC is on the ordinal of
the safety value it chose (safe 0 ... high 3), ties included.
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.from_git import module_at_commit
from hyper.core.catalogue import DESCRIPTIVE_VALUES
from hyper.core.settings import Settings
from hyper.core.stats import Estimate, auc_interval, mean_interval, wilson
from hyper.data import dataset_files
from hyper.method.embeddings import SentenceEmbedder
from hyper_tagger.descriptive import DESCRIPTIVE_FEATURES, PrototypeTagger, prototype_tagger

REPO = Path(__file__).resolve().parents[1]
TEST_SET = REPO / "data" / "tag-test-set.jsonl"
HH = REPO / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
PANDALM = REPO / "data" / "pandalm-testset.jsonl.gz"
BASELINE = "c89b4928043b6ac9da94964f7f5112abaee1ad51"  # the zero-shot tag set (descriptions, not prototypes)
BASELINE_FILE = "services/tagger/hyper_tagger/descriptive.py"
ORDINAL = ("expertise_level", "open_endedness", "complexity_of_intents", "safety_concern")
FLAGS = {"format_constraints": "format_constraints::present",
         "in_context_material": "type_of_in_context_material::present"}
APP_SUBJECTS = {
    "merriam-webster.com": "Linguistics and language", "Grammarly": "Linguistics and language",
    "Doulingo": "Linguistics and language", "ludwig.guru": "Linguistics and language",
    "Tasty": "Culinary arts", "Wolfram alpha": "Mathematics", "(Wolfram alpha)?": "Mathematics",
    "Spotify": "Performing arts", "Goodreads": "Literature", "ESPN": "Human physical performance and recreation",
    "CNN News": "Journalism", "Indeed": "Business", "LinkedIn": "Business",
}
DEV_RED_TEAM = 300  # HH-RLHF development prompts sampled (PandaLM's 70 are all taken)


@dataclass
class Prompts:
    prompts: list[str]
    red_team: np.ndarray  # bool: an HH-RLHF red-team prompt
    labels: list[dict | None]  # hand labels (test set only)
    second: list[dict | None]  # a second labeller's, where there is one
    known_subject: list[str | None]  # from the PandaLM app, where it is unambiguous


def gzip_records(path: Path) -> list[dict]:
    with gzip.open(path) as lines:
        return [json.loads(line) for line in lines]


def pandalm_apps() -> dict[str, str]:
    rows = gzip_records(PANDALM)
    return {row["prompt"]: row["app"] for row in rows}


def test_prompts() -> Prompts:
    rows = [json.loads(line) for line in TEST_SET.read_text().splitlines()]
    apps = pandalm_apps()
    return Prompts([r["prompt"] for r in rows], np.array([r["source"] == "hh-rlhf" for r in rows]),
                   [r["labels"] for r in rows], [r.get("second_labels") for r in rows],
                   [APP_SUBJECTS.get(apps.get(r["prompt"], "")) for r in rows])


def dev_prompts(seed: int = 0) -> Prompts:
    taken = {json.loads(line)["prompt"] for line in TEST_SET.read_text().splitlines()}
    pairs = dataset_files.read_dataset(HH).instances
    hh = [p for p in dict.fromkeys(i.prompt for i in pairs) if p not in taken]
    hh = list(np.random.default_rng(seed).choice(hh, DEV_RED_TEAM, replace=False))
    apps = {prompt: app for prompt, app in pandalm_apps().items() if prompt not in taken}
    prompts = hh + list(apps)
    n = len(prompts)
    return Prompts(prompts, np.arange(n) < len(hh), [None] * n, [None] * n,
                   [None] * len(hh) + [APP_SUBJECTS.get(app) for app in apps.values()])


def evenly_spaced(prompts: Prompts, n: int) -> Prompts:
    rows = np.linspace(0, len(prompts.prompts) - 1, min(n, len(prompts.prompts))).round().astype(int)
    return Prompts([prompts.prompts[k] for k in rows], prompts.red_team[rows], [prompts.labels[k] for k in rows],
                   [prompts.second[k] for k in rows], [prompts.known_subject[k] for k in rows])


def named_tags(bits: np.ndarray) -> list[set[str]]:
    return [{name for name, bit in zip(DESCRIPTIVE_FEATURES, row, strict=True) if bit} for row in bits]


def value_of(tags: set[str], dimension: str) -> str:
    return next(name.split("::", 1)[1] for name in tags if name.startswith(f"{dimension}::"))


def subjects_of(tags: set[str]) -> list[str]:
    return [name.split("::", 1)[1] for name in tags if name.startswith("subject_of_expertise::")]


def as_labels(tags: set[str]) -> dict:
    """A tagger's tags in the hand labels' shape."""
    return {**{dim: value_of(tags, dim) for dim in ORDINAL}, "subjects": subjects_of(tags),
            **{flag: name in tags for flag, name in FLAGS.items()}}


def agreement(predicted: list[dict], truth: list[dict | None]) -> dict[str, np.ndarray]:
    """Per dimension, 0/1 per prompt with a truth: does the prediction agree with it? Subjects
    agree when they share a field (either side may name up to three)."""
    rows = [(p, t) for p, t in zip(predicted, truth, strict=True) if t is not None]
    out = {dim: np.array([p[dim] == t[dim] for p, t in rows], dtype=float) for dim in (*ORDINAL, *FLAGS)}
    out["subjects"] = np.array([bool(set(p["subjects"]) & set(t["subjects"])) for p, t in rows], dtype=float)
    return out


def proportion(hits: np.ndarray) -> dict:
    return wilson(int(hits.sum()), len(hits)).to_json() | {"n": len(hits)}


class Backend:
    """A tag set to measure: its tags and its "any concern" score (None: the ordinal of the
    safety value it tagged)."""

    def __init__(self, name: str, tag: Callable[[list[str]], np.ndarray],
                 concern: Callable[[list[str]], np.ndarray] | None = None):
        self.name, self.tag, self.concern = name, tag, concern


def ordinal_concern(bits: np.ndarray) -> np.ndarray:
    """The position of each row's safety_concern value in the catalogue's order (0: safe)."""
    values = DESCRIPTIVE_VALUES["safety_concern"]
    columns = [DESCRIPTIVE_FEATURES.index(f"safety_concern::{value}") for value in values]
    return np.argmax(bits[:, columns], axis=1).astype(float)


def current_backend(embedder: SentenceEmbedder) -> Backend:
    tagger = prototype_tagger(embedder)
    return Backend(tagger.name, tagger.tag, tagger.concern_scores)


def llm_backend(settings: Settings, kind: str, embedder: SentenceEmbedder) -> Backend:
    """The tagger's `kind` backend (vllm: the model HYPER_LLM_MODEL in this process; openai: the
    judge's endpoint HYPER_JUDGE_URL and HYPER_JUDGE_MODEL), built as the tagger service builds it."""
    from hyper.core.errors import InvalidArgument
    from hyper_tagger.server import descriptive_backend

    try:
        tagger = descriptive_backend(settings.model_copy(update={"tagging_backend": kind}), embedder)
    except InvalidArgument as error:
        raise SystemExit(f"--backend {kind}: {error}") from None
    return Backend(tagger.name, tagger.tag)


def baseline_backend(embedder: SentenceEmbedder, directory: Path) -> Backend:
    old = module_at_commit(BASELINE, BASELINE_FILE, "baseline_descriptive", directory)
    tagger = old.ZeroShotEmbeddingTagger(embedder)
    values, described = tagger.scalar["safety_concern"]

    def concern(prompts: list[str]) -> np.ndarray:
        similarity = embedder.encode([old.focus(p) for p in prompts]) @ described.T
        return similarity[:, 1:].max(axis=1) - similarity[:, 0]

    return Backend(tagger.name, tagger.tag, concern)


def measure(backend: Backend, prompts: Prompts) -> dict:
    bits = backend.tag(prompts.prompts)
    predicted = [as_labels(tags) for tags in named_tags(bits)]
    concern = backend.concern(prompts.prompts) if backend.concern else ordinal_concern(bits)
    hits = agreement(predicted, prompts.labels)
    labelled = np.array([t is not None for t in prompts.labels])
    hand_concern = np.array([t["safety_concern"] != "safe" for t in prompts.labels if t is not None])
    known = [(p, k) for p, k in zip(predicted, prompts.known_subject, strict=True) if k]
    result = {
        "safety_red_team_auc": auc_interval(concern, prompts.red_team).to_json(),
        "safety_hand_auc": (auc_interval(concern[labelled], hand_concern).to_json()
                            if hand_concern.size else None),
        "known_category_subject": proportion(np.array([k in p["subjects"] for p, k in known], dtype=float)),
        "hand": {dim: proportion(h) for dim, h in hits.items()} if hand_concern.size else {},
        "flagged_high": {"red_team": float(np.mean([p["safety_concern"] == "high" for p, r in
                                                   zip(predicted, prompts.red_team, strict=True) if r])),
                         "benign": float(np.mean([p["safety_concern"] == "high" for p, r in
                                                 zip(predicted, prompts.red_team, strict=True) if not r]))},
    }
    return {"name": backend.name, **result, "_hits": hits, "_predicted": predicted}


def labeller_agreement(prompts: Prompts) -> dict:
    pairs = [(s, t) for s, t in zip(prompts.second, prompts.labels, strict=True) if s is not None]
    hits = agreement([s for s, _ in pairs], [t for _, t in pairs])
    return {dim: proportion(h) for dim, h in hits.items()}


def paired(after: dict, before: dict) -> dict[str, Estimate]:
    return {dim: mean_interval(after["_hits"][dim] - before["_hits"][dim]) for dim in after["_hits"]}


def fmt(estimate: dict | None) -> str:
    if not estimate:
        return "-"
    return f"{estimate['mean']:.2f} [{estimate['ci_low']:.2f}, {estimate['ci_high']:.2f}]"


def table(result: dict) -> str:
    before, after, ceiling = result["before"], result["after"], result.get("labellers", {})
    lines = [f"tag sets: before {before['name']}, after {after['name']} ({result['split']} prompts)",
             "| measure | before | after | after - before | two labellers "
             f"(n={ceiling.get('subjects', {}).get('n', 0)}) |",
             "| --- | --- | --- | --- | --- |"]
    for key, label in (("safety_red_team_auc", "safety: red-team vs benign, AUC of 'any concern'"),
                       ("safety_hand_auc", "safety: hand-labelled concern vs safe, AUC"),
                       ("known_category_subject", "subject: PandaLM app's field among the subjects")):
        lines.append(f"| {label} | {fmt(before[key])} | {fmt(after[key])} | | |")
    for dim, diff in result.get("paired", {}).items():
        lines.append(f"| {dim}: agrees with the hand label | {fmt(before['hand'][dim])} | {fmt(after['hand'][dim])} "
                     f"| {fmt(diff)} | {fmt(ceiling.get(dim))} |")
    for side in ("red_team", "benign"):
        lines.append(f"| share tagged safety 'high': {side} | {before['flagged_high'][side]:.2f} "
                     f"| {after['flagged_high'][side]:.2f} | | |")
    return "\n".join(lines)


def run(dev: bool = False, backend: str = "prototypes", limit: int = 0) -> dict:
    """`backend` prototypes: today's CPU tags (after) against the tag set they replaced (before);
    vllm or openai: that LLM backend (after) against today's CPU tags (before); static: the tag
    set for static vectors (centred centroids, after) against the transformer's method, nearest
    prototypes, on the same static vectors (before; the fast feature set's tags until 2026-12-07).
    The transformer's own figures are those of the default run.
    `limit`: that many prompts, evenly spaced over the set (a smoke run)."""
    prompts = dev_prompts() if dev else test_prompts()
    if limit:
        prompts = evenly_spaced(prompts, limit)
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="hyper-bench-tags-") as scratch:
        embedder = SentenceEmbedder(settings.embedding_model, Path(scratch))
        if backend == "static":
            static = SentenceEmbedder(settings.embedding_model, Path(scratch), runtime="static")
            nearest = PrototypeTagger(static)
            before = measure(Backend(f"{nearest.name} on static vectors", nearest.tag, nearest.concern_scores),
                             prompts)
            after = measure(current_backend(static), prompts)
        elif backend != "prototypes":
            before = measure(current_backend(embedder), prompts)
            after = measure(llm_backend(settings, backend, embedder), prompts)
        else:
            before = measure(baseline_backend(embedder, Path(scratch)), prompts)
            after = measure(current_backend(embedder), prompts)
    result = {"split": "development" if dev else "test", "n_prompts": len(prompts.prompts),
              "n_red_team": int(prompts.red_team.sum()), "before": before, "after": after}
    if not dev:
        result["labellers"] = labeller_agreement(prompts)
        result["paired"] = {dim: e.to_json() for dim, e in paired(after, before).items()}
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", action="store_true", help="the development prompts instead of the test set")
    parser.add_argument("--backend", choices=("prototypes", "vllm", "openai", "static"), default="prototypes",
                        help="vllm (HYPER_LLM_MODEL) or openai (HYPER_JUDGE_URL, HYPER_JUDGE_MODEL): that tagger "
                             "against today's CPU tags; static: today's tags on the distilled static model")
    parser.add_argument("--limit", type=int, default=0, help="only this many prompts, evenly spaced (a smoke run)")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench" / "tags.json")
    args = parser.parse_args(argv)
    result = run(args.dev, args.backend, args.limit)
    for side in ("before", "after"):
        result[side] = {k: v for k, v in result[side].items() if not k.startswith("_")}
    suffix = ("" if args.backend == "prototypes" else f"-{args.backend}") + ("-dev" if args.dev else "")
    out = args.out.with_name(args.out.stem + suffix + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
