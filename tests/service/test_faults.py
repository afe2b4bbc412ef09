"""Faults against the running system, as `make bench-reliability` scripts them: killed
services, a killed Redis, a state directory that is full or read-only."""

import os

import pytest

from harness import faults

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    with faults.System.running(tmp_path_factory.mktemp("faults")) as running:
        yield running


@pytest.fixture(scope="module")
def pairs(hh_dataset):
    return hh_dataset.instances


def check(outcome: dict) -> None:
    assert outcome["passed"], outcome


def test_a_finished_route_survives_a_router_restart(system, pairs):
    check(faults.router_restart(system, pairs))


def test_models_and_runs_survive_a_ppm_restart(system):
    check(faults.ppm_restart(system))


def test_a_route_whose_tagger_dies_answers_unavailable_in_time_and_works_after_restart(system, pairs):
    check(faults.tagger_killed(system, pairs))


def test_a_route_survives_redis_dying_and_the_cache_recovers(system, pairs):
    check(faults.redis_killed(system, pairs))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_or_read_only_state_directory_is_a_clear_error_with_nothing_half_written(system, pairs):
    check(faults.state_unwritable(system, pairs))
