"""The access policy: a permission for every RPC, callers by token or certificate, refusals
that say who lacks what."""

import json

import pytest

from hyper.api.access import PERMISSION_OF, PERMISSIONS, AccessPolicy, token_digest
from hyper.core.errors import HyperError, PermissionDenied, Unauthenticated
from hyper.v1 import ppm_pb2, router_pb2, tagger_pb2

ROUTER, PPM, TAGGER = "hyper.v1.RouterService", "hyper.v1.PPMService", "hyper.v1.TaggerService"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def policy(tmp_path, callers: list[dict], record_token: str = "") -> AccessPolicy:
    path = tmp_path / "access.json"
    path.write_text(json.dumps({"callers": callers}))
    return AccessPolicy.load(str(path), record_token)


def test_every_rpc_of_every_service_needs_one_known_permission_and_every_permission_is_used():
    services = {s.full_name: [m.name for m in s.methods]
                for module in (ppm_pb2, router_pb2, tagger_pb2) for s in module.DESCRIPTOR.services_by_name.values()}
    assert {name: sorted(methods) for name, methods in PERMISSION_OF.items()} == \
        {name: sorted(methods) for name, methods in services.items()}
    used = {permission for methods in PERMISSION_OF.values() for permission in methods.values()}
    assert used == set(PERMISSIONS)


def test_with_a_policy_a_caller_may_call_only_what_its_permissions_name(tmp_path):
    access = policy(tmp_path, [
        {"name": "gateway", "token_sha256": token_digest("gw"), "permissions": ["route", "read_routes"]},
        {"name": "router", "certificate": "hyper-router", "permissions": ["tag", "read_models"]},
        {"name": "operators", "token_sha256": token_digest("op"), "permissions": ["*"]}])
    assert access.authorize(ROUTER, "Route", bearer("gw"), []) == "gateway"
    assert access.authorize(TAGGER, "TagCached", {}, ["hyper-router"]) == "router"
    assert access.authorize(PPM, "Promote", bearer("op"), []) == "operators"
    with pytest.raises(PermissionDenied, match="gateway may not call Annotate: it needs the 'judge' permission"):
        access.authorize(TAGGER, "Annotate", bearer("gw"), [])
    with pytest.raises(PermissionDenied, match="router may not call ImportModel"):
        access.authorize(PPM, "ImportModel", {}, ["hyper-router"])
    for anonymous in ({}, bearer("guess"), {"authorization": "gw"}):
        with pytest.raises(Unauthenticated, match="Route needs the 'route' permission"):
            access.authorize(ROUTER, "Route", anonymous, ["someone-else"])


def test_without_a_policy_only_run_recording_is_closed_and_only_while_a_record_token_is_set():
    assert AccessPolicy.load().authorize(PPM, "RecordRun", {}, []) == ""
    recorded = AccessPolicy.load(record_token="t0ken")
    assert recorded.authorize(ROUTER, "Route", {}, []) == ""
    assert recorded.authorize(PPM, "RecordRun", bearer("t0ken"), []) == "run-recorder"
    with pytest.raises(Unauthenticated, match="HYPER_PPM_RECORD_TOKEN"):
        recorded.authorize(PPM, "RecordRun", bearer("wrong"), [])


def test_an_rpc_without_a_permission_is_closed_to_everyone(tmp_path):
    access = policy(tmp_path, [{"name": "operators", "token_sha256": token_digest("op"), "permissions": ["*"]}])
    with pytest.raises(PermissionDenied, match="has no permission assigned"):
        access.authorize(ROUTER, "DeleteEverything", bearer("op"), [])


@pytest.mark.parametrize(("callers", "problem"), [
    ([{"name": "a", "token_sha256": token_digest("x"), "permissions": ["route", "rout"]}],
     r"callers\[0\]\.permissions: .*unknown permission 'rout'"),
    ([{"name": "a", "permissions": ["route"]}], r"callers\[0\]: .*token_sha256 or certificate"),
    ([{"name": "a", "token_sha256": "plain-token", "permissions": ["route"]}], r"callers\[0\]\.token_sha256"),
    ([{"name": "a", "certificate": "c", "permissions": []}, {"name": "a", "certificate": "d", "permissions": []}],
     "caller names must be unique: a"),
    ([{"name": "a", "certificate": "c", "permissions": [], "role": "admin"}], r"callers\[0\]\.role"),
])
def test_a_policy_file_with_a_mistake_is_refused_naming_where(tmp_path, callers, problem):
    with pytest.raises(HyperError, match=f"HYPER_ACCESS_POLICY.*{problem}"):
        policy(tmp_path, callers)


def test_an_unreadable_policy_file_stops_the_server_rather_than_opening_it(tmp_path):
    with pytest.raises(HyperError, match="cannot be read"):
        AccessPolicy.load(str(tmp_path / "missing.json"))
    (tmp_path / "cut.json").write_text('{"callers": [')
    with pytest.raises(HyperError, match="is not valid"):
        AccessPolicy.load(str(tmp_path / "cut.json"))
