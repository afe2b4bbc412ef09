"""Who may call what: a permission per RPC, callers identified by token or certificate.

Every RPC of every service needs exactly one permission (PERMISSION_OF; a test checks no RPC
is left out). A caller is named in the access policy (HYPER_ACCESS_POLICY, a JSON file an
operator mounts from a Secret) with the permissions it holds, and is recognised by the sha256
of the bearer token it presents, or by its client certificate's identity under mutual TLS:

    {"callers": [
      {"name": "gateway", "token_sha256": "9f86d0...", "permissions": ["route", "read_routes"]},
      {"name": "router", "certificate": "hyper-router", "permissions": ["tag", "read_models"]},
      {"name": "operators", "token_sha256": "60303a...", "permissions": ["*"]}]}

With a policy, every RPC is closed to whoever it does not name. Without one every RPC is
open, except RecordRun while a record token (HYPER_PPM_RECORD_TOKEN) is set: its holders are
the caller `run-recorder`. Health and reflection are always open: probes and tooling carry no
credentials. `hyper up` gives the embedded default a policy of its own (`local_access`): one
caller, whoever can read the token it keeps under the home directory (mode 0600), so other
users of the machine cannot call the services on its loopback ports.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Sequence
from contextvars import ContextVar
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hyper.core.atomic_files import write_text_atomic
from hyper.core.errors import HyperError, PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)

PERMISSIONS = {
    "route": "Route and Diagnose: read a dataset, tag it, route it (compute, and the judge where the "
             "request asks for it)",
    "read_routes": "GetRoute, ListAssignments, Report: read saved routes",
    "delete_routes": "DeleteRoute: delete a saved route",
    "tag": "the tagger's Tag, TagStream, MissingKeys, TagCached and GetCatalogue",
    "judge": "the tagger's Annotate: paid LLM-judge calls",
    "read_models": "ppm's GetModel, GetArtifact, ListModels, ListRuns",
    "administer_models": "ppm's Fit, FitErrorModel, ImportModel, Promote",
    "record_runs": "ppm's RecordRun: the training Jobs' results",
}
ALL = "*"

PERMISSION_OF = {
    "hyper.v1.RouterService": {"Route": "route", "Diagnose": "route", "GetRoute": "read_routes",
                               "ListAssignments": "read_routes", "Report": "read_routes",
                               "DeleteRoute": "delete_routes"},
    "hyper.v1.TaggerService": {"Tag": "tag", "TagStream": "tag", "MissingKeys": "tag", "TagCached": "tag",
                               "GetCatalogue": "tag", "Annotate": "judge"},
    "hyper.v1.PPMService": {"GetModel": "read_models", "GetArtifact": "read_models", "ListModels": "read_models",
                            "ListRuns": "read_models", "Fit": "administer_models",
                            "FitErrorModel": "administer_models", "ImportModel": "administer_models",
                            "Promote": "administer_models", "RecordRun": "record_runs"},
}
RUN_RECORDER = "run-recorder"
# Who the call being served is from, as `authorize` named it ("" where the permission is open):
# what per-caller quotas count against.
CALLER: ContextVar[str] = ContextVar("caller", default="")


class Caller(BaseModel):
    """One caller of the policy: who it is, how it is recognised, what it may do."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    token_sha256: str = Field("", pattern=r"^([0-9a-f]{64})?$")
    certificate: str = ""
    permissions: list[str]

    @field_validator("permissions")
    @classmethod
    def _known(cls, permissions: list[str]) -> list[str]:
        unknown = [p for p in permissions if p != ALL and p not in PERMISSIONS]
        if unknown:
            raise ValueError(f"unknown permission {unknown[0]!r}; known: {', '.join(PERMISSIONS)} or {ALL!r}")
        return permissions

    @model_validator(mode="after")
    def _recognisable(self) -> Caller:
        if not (self.token_sha256 or self.certificate):
            raise ValueError("a caller needs token_sha256 or certificate to be recognised by")
        return self

    def holds(self, permission: str) -> bool:
        return ALL in self.permissions or permission in self.permissions


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    callers: list[Caller]

    @model_validator(mode="after")
    def _unique_names(self) -> PolicyFile:
        names = [caller.name for caller in self.callers]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"caller names must be unique: {', '.join(repeated)}")
        return self


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AccessPolicy:
    """The callers, and which permissions are enforced: all with a policy file, else only
    record_runs while a record token is set."""

    def __init__(self, callers: Sequence[Caller], enforced: set[str]):
        self.callers = list(callers)
        self.enforced = enforced

    @classmethod
    def load(cls, policy_file: str = "", record_token: str = "") -> AccessPolicy:
        callers = _read_policy(Path(policy_file)).callers if policy_file else []
        enforced = set(PERMISSIONS) if policy_file else set()
        if record_token:
            callers.append(Caller(name=RUN_RECORDER, token_sha256=token_digest(record_token),
                                  permissions=["record_runs"]))
            enforced.add("record_runs")
        if not enforced:
            log.warning("no access policy (HYPER_ACCESS_POLICY): every caller may call every RPC")
        return cls(callers, enforced)

    def authorize(self, service: str, method: str, metadata: dict[str, str], identities: Sequence[str]) -> str:
        """The name of the caller allowed this call ("" where the permission is open); else
        Unauthenticated (nobody the policy knows) or PermissionDenied (known, not allowed)."""
        permission = permission_of(service, method)
        if permission not in self.enforced:
            return ""
        callers = self._recognised(metadata.get("authorization", ""), identities)
        if not callers:
            raise Unauthenticated(f"{method} needs the {permission!r} permission: present a token "
                                  "(HYPER_CALLER_TOKEN; under `hyper up`, its clients read HOME/access/token) "
                                  "or a certificate the access policy names"
                                  + (" (RecordRun: HYPER_PPM_RECORD_TOKEN)" if permission == "record_runs" else ""))
        allowed = [caller.name for caller in callers if caller.holds(permission)]
        if not allowed:
            raise PermissionDenied(f"{' / '.join(c.name for c in callers)} may not call {method}: "
                                   f"it needs the {permission!r} permission")
        return allowed[0]

    def _recognised(self, authorization: str, identities: Sequence[str]) -> list[Caller]:
        token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
        digest = token_digest(token) if token else ""
        return [caller for caller in self.callers
                if (digest and caller.token_sha256 and hmac.compare_digest(digest, caller.token_sha256))
                or (caller.certificate and caller.certificate in identities)]


def permission_of(service: str, method: str) -> str:
    try:
        return PERMISSION_OF[service][method]
    except KeyError:  # a new RPC nobody gave a permission: closed to all, and said so
        raise PermissionDenied(f"{service}/{method} has no permission assigned; nobody may call it") from None


def _read_policy(path: Path) -> PolicyFile:
    try:
        return PolicyFile.model_validate(json.loads(path.read_text()))
    except OSError as error:
        raise HyperError(f"access policy {path} (HYPER_ACCESS_POLICY) cannot be read: {error}") from error
    except ValueError as error:
        raise HyperError(f"access policy {path} (HYPER_ACCESS_POLICY) is not valid: {_first_problem(error)}") from error


def _first_problem(error: ValueError) -> str:
    if not isinstance(error, ValidationError):
        return str(error)
    first = error.errors()[0]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]).lstrip(".")
    return f"{where or 'the file'}: {first['msg']}"


LOCAL_CALLER = "local-owner"


def local_access_files(home: Path) -> tuple[Path, Path]:
    """`hyper up`'s token and policy: made once, readable by their owner alone."""
    directory = home / "access"
    token_file, policy_file = directory / "token", directory / "policy.json"
    if token_file.is_file() and policy_file.is_file():
        return token_file, policy_file
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    policy = {"callers": [{"name": LOCAL_CALLER, "token_sha256": token_digest(token), "permissions": [ALL]}]}
    write_text_atomic(policy_file, json.dumps(policy), permissions=0o600)
    write_text_atomic(token_file, token, permissions=0o600)  # last: it marks the pair done
    return token_file, policy_file


def local_token(home: Path) -> str:
    """The token `hyper up` keeps under this home, if it made one and it can be read."""
    try:
        return (home / "access" / "token").read_text().strip()
    except OSError:
        return ""
