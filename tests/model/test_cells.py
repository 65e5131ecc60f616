"""H3 discovery cells: only coarse resolutions, and coverage that matches brute force."""

from __future__ import annotations

import math
import random

import h3
import pytest

from tourserver.model import cells, geo


def test_only_coarse_cells_are_accepted():
    lat, lon = 29.5572, 106.5770
    for res in (7, 8):
        cell = h3.latlng_to_cell(lat, lon, res)
        assert cells.parse_cell(cell) == (cell, res)
    for res in (0, 6, 9, 12, 15):
        with pytest.raises(cells.CellError, match="resolution"):
            cells.parse_cell(h3.latlng_to_cell(lat, lon, res))
    for bad in ("", "zz", "8840000000fffff", "../../etc", "8" * 40):
        with pytest.raises(cells.CellError):
            cells.parse_cell(bad)


def _sampled_circle_cells(lat, lon, radius, res):
    found = set()
    for i in range(2000):
        bearing = (i * 137.508) % 360
        distance = radius * math.sqrt((i + 0.5) / 2000)
        found.add(h3.latlng_to_cell(*geo.destination_point(lat, lon, bearing, distance), res))
    for b in range(0, 360, 2):  # the rim
        found.add(h3.latlng_to_cell(*geo.destination_point(lat, lon, b, radius * 0.999), res))
    return found


@pytest.mark.parametrize("res", [7, 8])
def test_circle_cells_cover_what_sampling_finds(res):
    rng = random.Random(7)
    for _ in range(20):
        lat, lon = 29.5 + rng.random() * 0.1, 106.5 + rng.random() * 0.1
        radius = rng.choice([30, 120, 600, 1500])
        got = cells.circle_cells(lat, lon, radius, res)
        sampled = _sampled_circle_cells(lat, lon, radius, res)
        assert sampled <= got
        # and nothing far outside: every extra cell is within reach of the circle
        edge = h3.average_hexagon_edge_length(res, unit="m")
        for cell in got - sampled:
            clat, clon = h3.cell_to_latlng(cell)
            assert geo.haversine_m(lat, lon, clat, clon) < radius + edge * 1.1


def test_line_cells_cover_the_route():
    route = [(106.5770, 29.5572), (106.5873, 29.5658), (106.5340, 29.5480)]
    for res in (7, 8):
        got = cells.line_cells(route, res)
        for (lon_a, lat_a), (lon_b, lat_b) in zip(route, route[1:], strict=False):
            for i in range(501):
                t = i / 500
                p = h3.latlng_to_cell(lat_a + t * (lat_b - lat_a), lon_a + t * (lon_b - lon_a),
                                      res)
                assert p in got
        assert len(got) < 40  # a few km of route touches a handful of cells, not a region


@pytest.mark.parametrize("bad", ["-1", "-8840197183fffff", "0x884019718", " 8840197183fffff"])
def test_strings_h3_cannot_parse_are_refused_not_crashing(bad):
    with pytest.raises(cells.CellError):
        cells.parse_cell(bad)
