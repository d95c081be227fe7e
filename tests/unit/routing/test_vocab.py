"""The shared vocabulary and the one haversine."""

from __future__ import annotations

import math

import numpy as np
import pytest

from routing import vocab


def test_every_road_class_has_a_default_speed() -> None:
    """A road of any class gets a speed when its row gives none."""
    assert set(vocab.DEFAULT_SPEED_KMH) == set(vocab.ROAD_CLASSES)
    assert all(speed > 0 for speed in vocab.DEFAULT_SPEED_KMH.values())


def test_haversine_takes_latitude_first() -> None:
    """A degree of latitude is ~111.2 km anywhere; a degree of longitude at 60° N is half that."""
    degree_m = math.radians(1) * vocab.EARTH_RADIUS_M
    assert vocab.haversine_m(0.0, 0.0, 1.0, 0.0) == pytest.approx(degree_m, rel=1e-12)
    assert vocab.haversine_m(60.0, 0.0, 60.0, 1.0) == pytest.approx(degree_m / 2, rel=1e-4)


def test_haversine_scalars_and_arrays_agree() -> None:
    """Plain numbers give a float; arrays broadcast to the same values."""
    lat = np.array([31.80, 31.85, -33.9, 89.9])
    lon = np.array([117.20, 117.31, 151.2, -179.9])
    table = vocab.haversine_m(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    assert table.shape == (4, 4)
    for i in range(4):
        for j in range(4):
            one = vocab.haversine_m(float(lat[i]), float(lon[i]), float(lat[j]), float(lon[j]))
            assert isinstance(one, float)
            assert one == pytest.approx(table[i, j], rel=1e-12, abs=1e-6)


def test_haversine_of_antipodes_is_half_the_circumference() -> None:
    """Rounding at the antipode does not leave the arcsine's domain."""
    assert vocab.haversine_m(0.0, 0.0, 0.0, 180.0) == pytest.approx(math.pi * vocab.EARTH_RADIUS_M)
