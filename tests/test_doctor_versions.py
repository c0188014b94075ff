"""scripts/host/doctor.py's reading of the engine's and Compose's versions (the Docker check's thresholds)."""

from __future__ import annotations

import pytest

import doctor


@pytest.mark.parametrize("text, version", [("26.1.5+dfsg1", (26, 1, 5)), ("2.26.1-4", (2, 26, 1)),
                                           ("v2.24.4\n", (2, 24, 4)), ("28.2.2", (28, 2, 2))])
def test_versions_are_read_as_the_engine_and_compose_print_them(text, version):
    assert doctor.version_tuple(text) == version


@pytest.mark.parametrize("compose, new_enough", [("2.25.9", False), ("2.26.0", True), ("2.26.1-4", True),
                                                 ("2.24.4", False), ("2.9.0", False), ("v2.100.0", True),
                                                 ("3.0.0", True), ("2.27.0", True)])
def test_compose_older_than_2_26_mounts_whole_volumes_and_is_too_old(compose, new_enough):
    assert (doctor.version_tuple(compose) >= doctor.MIN_COMPOSE) is new_enough


@pytest.mark.parametrize("engine, new_enough", [("25.0.5", False), ("26.0.0", True), ("26.1.5+dfsg1", True)])
def test_an_engine_older_than_26_is_too_old_for_volume_subpaths(engine, new_enough):
    assert (doctor.version_tuple(engine) >= doctor.MIN_ENGINE) is new_enough


def test_text_without_a_version_is_an_error():
    with pytest.raises(ValueError, match="no version in"):
        doctor.version_tuple("unknown")
