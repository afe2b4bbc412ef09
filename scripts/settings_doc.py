"""Writes docs/settings.md: every setting of every process, from the typed settings classes
(their fields, defaults and descriptions), so the list cannot drift from the code.

    python scripts/settings_doc.py            # rewrite docs/settings.md
    python scripts/settings_doc.py --check    # exit 1 if it is not current
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel
from pydantic_settings import BaseSettings

from hyper.core import settings
from hyper.infra.tagging_jobs import TagJobSettings
from hyper.infra.training_jobs import JobSettings
from hyper_rm_trainer.devices import DeviceSettings

DOC = Path(__file__).resolve().parents[1] / "docs" / "settings.md"
GROUPS: list[tuple[type[BaseModel], str]] = [
    (settings.StateSettings, "HYPER_"), (settings.ServingSettings, "HYPER_"), (settings.TaggerSettings, "HYPER_"),
    (settings.JudgeSettings, "HYPER_"), (settings.PPMSettings, "HYPER_"), (settings.RouterSettings, "HYPER_"),
    (settings.GatewaySettings, "HYPER_")]
OWN_PREFIX: list[type[BaseSettings]] = [JobSettings, TagJobSettings, DeviceSettings]


def default_text(value: object) -> str:
    return f"`{value}`" if value not in ("", None) else "(empty)"


def table(group: type[BaseModel], prefix: str) -> list[str]:
    title = (group.__doc__ or group.__name__).strip().splitlines()[0]
    rows = [f"## {group.__name__}: {title}", "", "| variable | default | what |", "| --- | --- | --- |"]
    for name, field in group.model_fields.items():
        rows.append(f"| `{prefix}{name.upper()}` | {default_text(field.default)} | {field.description or ''} |")
    return [*rows, ""]


def render() -> str:
    lines = ["# Settings", "",
             "Every process (the services, the CLI, the Jobs) reads its settings from `HYPER_*` environment",
             "variables; the chart's ConfigMap and Secret set them in a cluster. Generated from the settings",
             "classes by `python scripts/settings_doc.py`; a test fails when this page is not current.", ""]
    for group, prefix in GROUPS:
        lines += table(group, prefix)
    for group in OWN_PREFIX:
        lines += table(group, group.model_config.get("env_prefix", ""))
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        current = DOC.read_text() == render()
        sys.exit(0 if current else "docs/settings.md is not current: python scripts/settings_doc.py")
    DOC.write_text(render())
    print(DOC)
