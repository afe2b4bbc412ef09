"""What a Job's pods ask of a node, where the user says (a small node, a big dataset): the CPU
and memory requests, the memory limit twice the request."""

from __future__ import annotations

CPU = r"^([0-9]+(\.[0-9]+|m)?)?$"  # a Kubernetes CPU quantity (2, 0.5, 500m); empty: the manifest's
MEMORY = r"^([0-9]+(Ki|Mi|Gi|Ti)?)?$"  # a memory quantity (4Gi, 1536Mi); empty: the manifest's


def request(container: dict, cpu: str, memory: str) -> None:
    """Sets the container's requests that are given (empty: kept as the base manifest has them)."""
    resources = container.setdefault("resources", {})
    if cpu:
        resources.setdefault("requests", {})["cpu"] = cpu
    if memory:
        resources.setdefault("requests", {})["memory"] = memory
        digits = memory.rstrip("KMGTi")
        resources.setdefault("limits", {})["memory"] = f"{2 * int(digits)}{memory[len(digits):]}"
