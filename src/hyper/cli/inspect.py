"""`hyper inspect`: a dataset file validated as Route would read it, and what it holds."""

from __future__ import annotations

import argparse
from collections import Counter

from hyper.cli.common import add_data_arguments, read_data
from hyper.core.settings import Settings


def cmd_inspect(args: argparse.Namespace, settings: Settings) -> None:
    dataset = read_data(args)
    print(f"format      {dataset.format}")
    print(f"instances   {len(dataset)}" + (f" ({dataset.n_skipped} bad rows skipped)" if dataset.n_skipped else ""))
    if dataset.notes:
        print(f"coerced     {len(dataset.notes)} values (listed above)")
    sources = Counter(source for i in dataset.instances for source in i.labels)
    for source in sorted(sources):
        labels = Counter(i.labels[source] for i in dataset.instances if source in i.labels)
        missing = len(dataset) - sources[source]
        print(f"label {source:<20s}" + "  ".join(f"{k}: {labels[k]:<5d}" for k in ("A", "B", "tie"))
              + (f"  (absent on {missing})" if missing else ""))
    with_confidence = sum(i.judge_confidence is not None for i in dataset.instances)
    print(f"judge confidence on {with_confidence} instances")


def inspect_parser(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.set_defaults(run=cmd_inspect)


PARSERS = {"inspect": inspect_parser}
