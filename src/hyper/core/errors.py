"""Error types raised by the core and mapped once at the edge (CLI exit codes, gRPC statuses)."""

from __future__ import annotations

from dataclasses import dataclass


class HyperError(Exception):
    """Base class of every error the project raises on purpose."""


@dataclass
class InvalidInstance(HyperError):
    """One bad input row: its 1-based line (or row) number, the field at fault, and why."""

    row: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}: field '{self.field}': {self.reason}"


class DatasetRejected(HyperError):
    """A file with bad rows, refused as a whole (nothing from it is used)."""

    def __init__(self, path: str, errors: list[InvalidInstance], max_listed: int = 20):
        self.path = path
        self.errors = errors
        listed = "\n".join(f"  {e}" for e in errors[:max_listed])
        more = f"\n  ... and {len(errors) - max_listed} more" if len(errors) > max_listed else ""
        super().__init__(
            f"{path}: {len(errors)} bad row(s); the file was refused "
            f"(pass skip_bad_rows / --skip-bad-rows to drop them):\n{listed}{more}"
        )


@dataclass
class InvalidArgument(HyperError):
    """A bad request argument, named by its field (mapped to gRPC INVALID_ARGUMENT)."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class NotFound(HyperError):
    """A named thing (model, version, run, dataset file) does not exist."""


class Unauthenticated(HyperError):
    """A caller without the credentials an RPC requires (mapped to gRPC UNAUTHENTICATED)."""


class PermissionDenied(HyperError):
    """A caller known to the access policy without the permission an RPC needs (mapped to gRPC
    PERMISSION_DENIED)."""


class QuotaExceeded(HyperError):
    """A caller past its quota (mapped to gRPC RESOURCE_EXHAUSTED: it may try again later)."""


class CallerGone(HyperError):
    """The caller cancelled or ran out of time before the answer was ready (mapped to gRPC
    CANCELLED; nobody reads it)."""


class PeerUnavailable(HyperError):
    """Something the service depends on (an LLM judge's endpoint) failed after its retries
    (mapped to gRPC UNAVAILABLE: the caller may try again later)."""
