"""The service images, built with rootful podman (scripts/images.py: a Debian base from
debootstrap, dependencies from a wheelhouse; layers cached) and the system run from them."""

import pytest

from harness.container_system import ContainerSystem, unexpected_modules
from scripts import images

pytestmark = [pytest.mark.service,
              pytest.mark.skipif(bool(images.available()), reason=f"no image builds here: {images.available()}")]


@pytest.fixture(scope="module")
def built():
    return images.build_all(progress=lambda message: None)


def test_every_image_runs_as_a_non_root_user_and_carries_only_its_own_dependencies(built):
    assert set(built) == set(images.BUILT_HERE)
    assert {service: row["user"] for service, row in built.items()} == dict.fromkeys(images.BUILT_HERE, "10001")
    unexpected = {service: unexpected_modules(service) for service in images.BUILT_HERE}
    assert unexpected == dict.fromkeys(images.BUILT_HERE, {})


def test_the_system_runs_from_its_images_read_only_and_records_a_job(built, tmp_path, hh_dataset):
    with ContainerSystem.running(tmp_path) as system:
        assert system.wait_serving() == {"ppm": "SERVING", "tagger": "SERVING", "router": "SERVING"}
        assert system.gateway_ready()
        routed = system.route(hh_dataset.instances[:40])
        assert len(routed.assignments) == 40 and routed.n_human == 10
        exit_code, states = system.train_job(hh_dataset.instances)
    assert exit_code == 0 and states == ["succeeded", "succeeded"]
