"""Distances in metres and projection onto shapes, against independent references."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from smartcity.transit.geometry import Polyline, cumulative_distance_m, haversine_m

# Astana, near the Baiterek tower: a city-scale origin for synthetic shapes.
LAT0, LON0 = 51.128, 71.430
M_PER_DEG_LAT = 111_195.0  # on the 6,371 km sphere


def _reference_haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Textbook haversine with math, radius 6,371,008.8 m (the IUGG mean radius)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


def _offset(east_m: float, north_m: float) -> tuple[float, float]:
    """(lat, lon) of a point east_m, north_m from the origin."""
    lat = LAT0 + north_m / M_PER_DEG_LAT
    lon = LON0 + east_m / (M_PER_DEG_LAT * math.cos(math.radians(LAT0)))
    return lat, lon


def _path(points_m: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    coords = [_offset(e, n) for e, n in points_m]
    return [c[0] for c in coords], [c[1] for c in coords]


def test_haversine_matches_the_reference_and_known_lengths() -> None:
    # One degree of latitude on the mean sphere is 111.195 km.
    assert abs(float(haversine_m(0.0, 0.0, 1.0, 0.0)) - 111_195.08) < 0.1
    # Astana → Almaty, about 970 km as the crow flies.
    d = float(haversine_m(51.1694, 71.4491, 43.2389, 76.8897))
    assert 960_000 < d < 980_000
    assert abs(d - _reference_haversine_m(51.1694, 71.4491, 43.2389, 76.8897)) < 1e-6


def test_cumulative_distance_is_the_sum_of_haversine_legs() -> None:
    rng = np.random.default_rng(7)
    lats = LAT0 + np.cumsum(rng.normal(0, 0.002, 200))
    lons = LON0 + np.cumsum(rng.normal(0, 0.003, 200))
    cum = cumulative_distance_m(lats, lons)
    expected = [0.0]
    for i in range(1, 200):
        expected.append(
            expected[-1] + _reference_haversine_m(lats[i - 1], lons[i - 1], lats[i], lons[i])
        )
    assert np.allclose(cum, expected, rtol=1e-9, atol=1e-6)


def test_projection_finds_the_nearest_point_like_a_brute_force_search() -> None:
    rng = np.random.default_rng(11)
    shape_m = np.cumsum(rng.uniform(-300, 300, (60, 2)), axis=0)
    lats, lons = _path([(float(e), float(n)) for e, n in shape_m])
    line = Polyline(lats, lons)
    pts_m = rng.uniform(shape_m.min(0), shape_m.max(0), (40, 2))
    p_lats, p_lons = _path([(float(e), float(n)) for e, n in pts_m])
    projection = line.project(p_lats, p_lons)
    for k, (pe, pn) in enumerate(pts_m):
        # Brute force on a dense resampling of the same polyline, in the same plane.
        best = (math.inf, 0.0)
        for j in range(len(shape_m) - 1):
            (ae, an), (be, bn) = shape_m[j], shape_m[j + 1]
            for t in np.linspace(0, 1, 401):
                d = math.hypot(pe - (ae + t * (be - ae)), pn - (an + t * (bn - an)))
                if d < best[0]:
                    seg = float(line.cum_m[j + 1] - line.cum_m[j])
                    best = (d, float(line.cum_m[j]) + t * seg)
        assert abs(projection.offset_m[k] - best[0]) < 1.0
        assert abs(projection.along_m[k] - best[1]) < 3.0


def test_a_stop_visited_twice_on_a_loop_gets_both_passes_in_trip_order() -> None:
    # East 1 km along a street, round a 400 × 300 m block (north, east, south, back west to
    # the corner), then on east another 1 km: the corner stop is served twice.
    shape = [(0, 0), (1000, 0), (1000, 300), (1400, 300), (1400, 0), (1000, 0), (2000, 0)]
    line = Polyline(*_path([(float(e), float(n)) for e, n in shape]))
    loop_m = 300 + 400 + 300 + 400
    # Stops stand 8 m off the street, on the side away from the block.
    stops = [(0, -8), (500, -8), (1000, -8), (1200, 308), (1000, -8), (1500, -8), (2000, -8)]
    expected = [0, 500, 1000, 1000 + 300 + 200, 1000 + loop_m, 1500 + loop_m, 2000 + loop_m]
    s_lats, s_lons = _path([(float(e), float(n)) for e, n in stops])

    in_order = line.project_in_order(s_lats, s_lons)

    assert np.allclose(in_order.along_m, expected, atol=2.0), in_order.along_m
    assert np.all(np.diff(in_order.along_m) >= 0)
    assert np.allclose(in_order.offset_m, 8.0, atol=0.5)
    # The plain nearest point cannot tell the passes apart: that is why trips use the other.
    nearest = line.project(s_lats, s_lons)
    assert abs(nearest.along_m[4] - nearest.along_m[2]) < 2.0


def test_an_out_and_back_route_on_one_street_serves_each_side_in_order() -> None:
    # Out 2 km east and back on the same line: stops at 500 m are passed on both legs.
    line = Polyline(*_path([(0.0, 0.0), (2000.0, 0.0), (0.0, 0.0)]))
    stops = [(0, 0), (500, -6), (2000, 0), (1500, 6), (500, 6), (0, 0)]
    s_lats, s_lons = _path([(float(e), float(n)) for e, n in stops])
    along = line.project_in_order(s_lats, s_lons).along_m
    assert np.allclose(along, [0, 500, 2000, 2500, 3500, 4000], atol=2.0), along


def test_a_stop_far_off_the_shape_does_not_pull_the_others_out_of_place() -> None:
    line = Polyline(*_path([(0.0, 0.0), (3000.0, 0.0)]))
    stops = [(0, 0), (1000, 0), (2900, 400), (2000, 0), (3000, 0)]  # the third is misplaced
    s_lats, s_lons = _path([(float(e), float(n)) for e, n in stops])
    along = line.project_in_order(s_lats, s_lons).along_m
    assert np.allclose(along[[0, 1, 4]], [0, 1000, 3000], atol=2.0)
    assert np.all(np.diff(along) >= 0)


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(
        st.tuples(st.floats(-3000, 3000), st.floats(-3000, 3000)), min_size=2, max_size=30
    ),
    stops=st.lists(
        st.tuples(st.floats(-3000, 3000), st.floats(-3000, 3000)), min_size=1, max_size=25
    ),
)
def test_in_order_projection_never_goes_backwards_and_stays_on_the_shape(
    shape: list[tuple[float, float]], stops: list[tuple[float, float]]
) -> None:
    line = Polyline(*_path(shape))
    projection = line.project_in_order(*_path(stops))
    assert np.all(np.diff(projection.along_m) >= -1e-6)
    assert np.all(projection.along_m >= 0)
    assert np.all(projection.along_m <= line.length_m + 1e-6)
    # Never nearer than the nearest point of the whole shape.
    nearest = line.project(*_path(stops))
    assert np.all(projection.offset_m >= nearest.offset_m - 1e-6)
