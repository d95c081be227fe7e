"""Small named cities and plans shared by the simulator's unit tests."""

from __future__ import annotations

import pytest

from routing.plan import Plan
from simulator.city import City, generate
from simulator.plans import greedy_plan
from simulator.roads import RoadNetwork


@pytest.fixture(scope="session")
def small_city() -> City:
    return generate(n_points=50, n_trucks=3, seed=1)


@pytest.fixture(scope="session")
def small_net(small_city: City) -> RoadNetwork:
    return RoadNetwork(small_city)


@pytest.fixture(scope="session")
def small_plan(small_city: City, small_net: RoadNetwork) -> Plan:
    """A short day: at most eight points per truck."""
    return greedy_plan(small_city, net=small_net, max_points_per_truck=8)
