"""Known-vector tests for tourserver.model.geo and tourserver.model.geoid."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tourserver.model import geo, geoid

SQ = math.sqrt(0.5)
# glTF scene "forward" (-Z) and up (+Y), in the scene's own y-up frame.
GLTF_FORWARD = np.array([0.0, 0.0, -1.0])
GLTF_UP = np.array([0.0, 1.0, 0.0])
# glTF y-up -> GeoPose z-up object frame, as 3D Tiles does: (x, y, z) -> (x, -z, y).
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
# ENU -> EUS axis relabelling: (e, n, u) -> (e, u, -n).
ENU_TO_EUS = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

# Compass direction (ENU unit vector) for each heading.
COMPASS_ENU = {
    0.0: (0.0, 1.0, 0.0),  # north
    90.0: (1.0, 0.0, 0.0),  # east
    180.0: (0.0, -1.0, 0.0),  # south
    270.0: (-1.0, 0.0, 0.0),  # west
}


def same_rotation(q1, q2, tol=1e-12) -> bool:
    """q and -q are the same rotation."""
    a, b = np.asarray(q1, float), np.asarray(q2, float)
    return bool(np.allclose(a, b, atol=tol) or np.allclose(a, -b, atol=tol))


# ------------------------------------------------------------------ quaternions


@pytest.mark.parametrize(
    ("heading", "enu", "eus"),
    [
        (0.0, (0, 0, 0, 1), (0, 0, 0, 1)),
        (90.0, (0, 0, -SQ, SQ), (0, -SQ, 0, SQ)),
        (180.0, (0, 0, -1, 0), (0, -1, 0, 0)),
        (270.0, (0, 0, SQ, SQ), (0, SQ, 0, SQ)),  # == -90 deg, canonical w >= 0
    ],
)
def test_heading_quaternions_known_values(heading, enu, eus):
    q = geo.heading_to_enu_quaternion(heading)
    assert np.allclose(q, enu, atol=1e-15)
    assert np.allclose(geo.enu_quaternion_to_eus(q), eus, atol=1e-15)
    # The literal formula from the convention, up to the sign of the quaternion.
    h = math.radians(heading)
    assert same_rotation(q, (0, 0, -math.sin(h / 2), math.cos(h / 2)))
    assert same_rotation(geo.enu_quaternion_to_eus(q), (0, -math.sin(h / 2), 0, math.cos(h / 2)))
    assert q[3] >= 0.0
    assert geo.is_unit_quaternion(q)


@pytest.mark.parametrize("heading", sorted(COMPASS_ENU))
def test_heading_points_scene_forward_to_compass_direction(heading):
    expected_enu = np.array(COMPASS_ENU[heading])
    q_enu = geo.heading_to_enu_quaternion(heading)
    # ENU form acts on the z-up object frame (glTF mapped by y-up -> z-up).
    fwd_enu = geo.quaternion_rotate(q_enu, Y_UP_TO_Z_UP @ GLTF_FORWARD)
    up_enu = geo.quaternion_rotate(q_enu, Y_UP_TO_Z_UP @ GLTF_UP)
    assert np.allclose(fwd_enu, expected_enu, atol=1e-12)
    assert np.allclose(up_enu, (0, 0, 1), atol=1e-12)
    # EUS form acts directly on glTF vectors and yields EUS vectors.
    q_eus = geo.enu_quaternion_to_eus(q_enu)
    assert np.allclose(geo.quaternion_rotate(q_eus, GLTF_FORWARD), ENU_TO_EUS @ expected_enu)
    assert np.allclose(geo.quaternion_rotate(q_eus, GLTF_UP), (0, 1, 0), atol=1e-12)


def test_heading_wraps_and_is_continuous():
    for h in (-90.0, 450.0, 630.0, -270.0, 1e-9, 359.999999):
        assert same_rotation(
            geo.heading_to_enu_quaternion(h), geo.heading_to_enu_quaternion(h % 360.0), tol=1e-9
        )
    assert same_rotation(geo.heading_to_enu_quaternion(-90.0), (0, 0, SQ, SQ))


def test_eus_conversion_with_pitch_rotates_vectors_consistently():
    # Scene facing east (heading 90), then pitched nose-up by 30 deg about its own
    # right axis. Its forward must end up 30 deg above the eastern horizon.
    pitch = math.radians(30.0)
    q_head = geo.heading_to_enu_quaternion(90.0)
    # In the z-up object frame "right" is +X; rotate about it by +30 (nose up).
    q_pitch = (math.sin(pitch / 2), 0.0, 0.0, math.cos(pitch / 2))
    q_enu = geo.quaternion_multiply(q_head, q_pitch)
    fwd_enu = geo.quaternion_rotate(q_enu, Y_UP_TO_Z_UP @ GLTF_FORWARD)
    assert np.allclose(fwd_enu, (math.cos(pitch), 0.0, math.sin(pitch)), atol=1e-12)
    q_eus = geo.enu_quaternion_to_eus(q_enu)
    fwd_eus = geo.quaternion_rotate(q_eus, GLTF_FORWARD)
    assert np.allclose(fwd_eus, (math.cos(pitch), math.sin(pitch), 0.0), atol=1e-12)
    assert np.allclose(
        geo.quaternion_rotate(q_eus, GLTF_UP), ENU_TO_EUS @ (-math.sin(pitch), 0, math.cos(pitch))
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-1.0, 1.0), min_size=4, max_size=4).filter(
        lambda v: sum(x * x for x in v) > 1e-3
    )
)
def test_eus_is_change_of_basis_for_any_rotation(raw):
    q_enu = geo.quaternion_normalize(raw)
    q_eus = geo.enu_quaternion_to_eus(q_enu)
    r_enu = geo.quaternion_to_matrix(q_enu)
    r_eus = geo.quaternion_to_matrix(q_eus)
    # Any glTF vector: EUS path == relabel(ENU path applied to the z-up mapped vector).
    assert np.allclose(r_eus, ENU_TO_EUS @ r_enu @ Y_UP_TO_Z_UP, atol=1e-12)
    assert same_rotation(geo.eus_quaternion_to_enu(q_eus), q_enu)


def test_quaternion_normalize_and_unit_check():
    assert geo.quaternion_normalize((0, 0, 0, 2)) == (0.0, 0.0, 0.0, 1.0)
    q = geo.quaternion_normalize((1, 2, 3, 4))
    assert geo.is_unit_quaternion(q, 1e-12)
    assert not geo.is_unit_quaternion((1, 2, 3, 4), 1e-6)
    assert geo.is_unit_quaternion((0, 0, 0, 1.0000005), 1e-6)
    assert not geo.is_unit_quaternion((0, 0, float("nan"), 1))
    assert not geo.is_unit_quaternion((0, 0, 1))
    with pytest.raises(ValueError):
        geo.quaternion_normalize((0, 0, 0, 0))


# ------------------------------------------------------------------------- ECEF


def test_ecef_epsg_guidance_note_7_2_example():
    # IOGP/EPSG Guidance Note 7-2, method 9602 (geographic/geocentric conversion)
    # worked example on WGS 84: 53 48 33.820 N, 2 07 46.380 E, h = 73.0 m
    # -> X = 3771793.968 m, Y = 140253.342 m, Z = 5124304.349 m.
    lat = 53 + 48 / 60 + 33.820 / 3600
    lon = 2 + 7 / 60 + 46.380 / 3600
    xyz = geo.geodetic_to_ecef(lat, lon, 73.0)
    assert xyz.shape == (3,)
    assert np.allclose(xyz, (3771793.968, 140253.342, 5124304.349), atol=1e-3)
    lat2, lon2, h2 = geo.ecef_to_geodetic((3771793.968, 140253.342, 5124304.349))
    assert lat2 == pytest.approx(lat, abs=1e-8)
    assert lon2 == pytest.approx(lon, abs=1e-8)
    assert h2 == pytest.approx(73.0, abs=1e-3)


def test_ecef_axes_and_poles():
    assert np.allclose(geo.geodetic_to_ecef(0, 0, 0), (geo.WGS84_A, 0, 0))
    assert np.allclose(geo.geodetic_to_ecef(0, 90, 10), (0, geo.WGS84_A + 10, 0))
    b = geo.WGS84_A * (1 - geo.WGS84_F)
    assert np.allclose(geo.geodetic_to_ecef(90, 0, 0), (0, 0, b), atol=1e-9)
    lat, _, h = geo.ecef_to_geodetic((0.0, 0.0, -b - 5.0))
    assert lat == -90.0 and h == pytest.approx(5.0, abs=1e-9)


@settings(max_examples=500, deadline=None)
@given(
    st.floats(-90.0, 90.0),
    st.floats(-180.0, 180.0, exclude_max=True),
    st.floats(-5_000.0, 100_000.0),
)
def test_ecef_round_trip(lat, lon, h):
    lat2, lon2, h2 = geo.ecef_to_geodetic(geo.geodetic_to_ecef(lat, lon, h))
    assert abs(h2 - h) < 1e-6
    assert abs(lat2 - lat) < 1e-11
    if abs(lat) < 89.9999:  # longitude is meaningless at the pole itself
        assert abs((lon2 - lon + 180.0) % 360.0 - 180.0) < 1e-11


# -------------------------------------------------------------------- ENU matrix


def test_enu_matrix_structure():
    lat, lon, h = 29.5630, 106.5516, 250.0
    m = geo.enu_to_ecef_matrix(lat, lon, h)
    assert m.shape == (4, 4)
    r = m[:3, :3]
    assert np.allclose(r.T @ r, np.eye(3), atol=1e-15)
    assert np.linalg.det(r) == pytest.approx(1.0)
    assert np.allclose(m[3], (0, 0, 0, 1))
    assert np.allclose(m[:3, 3], geo.geodetic_to_ecef(lat, lon, h))
    # Up is the ellipsoid normal: moving along it changes only h.
    p_up = m @ np.array([0.0, 0.0, 10.0, 1.0])
    lat2, lon2, h2 = geo.ecef_to_geodetic(p_up[:3])
    assert (lat2, lon2) == pytest.approx((lat, lon), abs=1e-12)
    assert h2 == pytest.approx(h + 10.0, abs=1e-8)
    # The normal is also the (normalised) gradient of x^2/a^2 + y^2/a^2 + z^2/b^2.
    x, y, z = geo.geodetic_to_ecef(lat, lon, 0.0)
    b = geo.WGS84_A * (1 - geo.WGS84_F)
    grad = np.array([x / geo.WGS84_A**2, y / geo.WGS84_A**2, z / b**2])
    assert np.allclose(m[:3, 2], grad / np.linalg.norm(grad), atol=1e-15)
    # East/North point where a small step along them goes.
    _, lon_e, _ = geo.ecef_to_geodetic((m @ np.array([1.0, 0, 0, 1]))[:3])
    lat_n, _, _ = geo.ecef_to_geodetic((m @ np.array([0, 1.0, 0, 1]))[:3])
    assert lon_e > lon and lat_n > lat


def test_enu_matrix_full_value_and_column_major():
    # Independent hand evaluation of Cesium's Transforms.eastNorthUpToFixedFrame
    # formula at lat 45, lon 90, h 0: east = (-sin lon, cos lon, 0),
    # north = (-sin lat cos lon, -sin lat sin lon, cos lat),
    # up = (cos lat cos lon, cos lat sin lon, sin lat), origin = (0, N cos lat, N(1-e2) sin lat)
    # with N = a / sqrt(1 - e2/2) = 6388838.290121148 m (e2 = 0.0066943799901413165).
    s = math.sqrt(0.5)
    n = 6388838.290121148
    e2 = 0.0066943799901413165
    expected = np.array(
        [
            [-1.0, 0.0, 0.0, 0.0],
            [0.0, -s, s, n * s],
            [0.0, s, s, n * (1 - e2) * s],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    m = geo.enu_to_ecef_matrix(45.0, 90.0, 0.0)
    assert np.allclose(m, expected, atol=1e-9)
    assert m[1, 3] == pytest.approx(4517590.878848931, abs=1e-6)
    assert m[2, 3] == pytest.approx(4487348.408865919, abs=1e-6)
    cm = geo.column_major(m)
    assert len(cm) == 16 and all(isinstance(v, float) for v in cm)
    assert cm[0:4] == pytest.approx([-1.0, 0.0, 0.0, 0.0], abs=1e-15)  # East column first
    assert cm[12:16] == pytest.approx([0.0, n * s, n * (1 - e2) * s, 1.0], abs=1e-6)  # origin
    with pytest.raises(ValueError):
        geo.column_major(np.eye(3))


# ------------------------------------------------------------------------- GCJ-02


@pytest.mark.parametrize(
    ("wgs", "gcj"),
    [
        # googollee/eviltransform test vectors (wgsLat, wgsLng -> gcjLat, gcjLng).
        ((31.1774276, 121.5272106), (31.17530398364597, 121.531541859215)),  # Shanghai
        ((22.543847, 113.912316), (22.540796131694766, 113.9171764808363)),  # Shenzhen
        ((39.911954, 116.377817), (39.91334545536069, 116.38404722455657)),  # Beijing
        # wandergis/coordtransform: wgs84togcj02(116.404, 39.915).
        ((39.915, 116.404), (39.91640428150164, 116.41024449916938)),
    ],
)
def test_gcj02_published_vectors(wgs, gcj):
    assert geo.wgs84_to_gcj02(*wgs) == pytest.approx(gcj, abs=1e-9)
    assert geo.gcj02_to_wgs84(*gcj) == pytest.approx(wgs, abs=1e-9)


def test_gcj02_chongqing_offset_and_round_trip():
    lat, lon = 29.5630, 106.5516  # Chongqing, Jiefangbei area
    g = geo.wgs84_to_gcj02(lat, lon)
    offset = geo.geodesic_distance_m(lat, lon, *g)
    assert 200.0 < offset < 800.0
    back = geo.gcj02_to_wgs84(*g)
    assert abs(back[0] - lat) < 1e-9 and abs(back[1] - lon) < 1e-9


@settings(max_examples=300, deadline=None)
@given(st.floats(18.0, 53.0), st.floats(74.0, 134.0))
def test_gcj02_round_trip_inside_china(lat, lon):
    back = geo.gcj02_to_wgs84(*geo.wgs84_to_gcj02(lat, lon))
    assert abs(back[0] - lat) < 1e-9 and abs(back[1] - lon) < 1e-9


@pytest.mark.parametrize(
    "p",
    [(48.8584, 2.2945), (40.6892, -74.0445), (-33.8568, 151.2153), (60.0, 100.0), (0.5, 100.0)],
)
def test_gcj02_identity_outside_china(p):
    assert geo.wgs84_to_gcj02(*p) == p
    assert geo.gcj02_to_wgs84(*p) == p


# ---------------------------------------------------------------------- distances


def _dms(d: float, m: float, s: float) -> float:
    return math.copysign(abs(d) + m / 60 + s / 3600, d)


# Vincenty (1975) / Geoscience Australia worked example: Flinders Peak -> Buninyong.
FLINDERS = (_dms(-37, 57, 3.72030), _dms(144, 25, 29.52440))
BUNINYONG = (_dms(-37, 39, 10.15610), _dms(143, 55, 35.38390))


def test_geodesic_distance_flinders_buninyong():
    assert geo.geodesic_distance_m(*FLINDERS, *BUNINYONG) == pytest.approx(54972.271, abs=1e-3)
    # The spherical shortcut is within its documented ~0.6%.
    hv = geo.haversine_m(*FLINDERS, *BUNINYONG)
    assert hv == pytest.approx(54972.271, rel=6e-3)


def test_destination_point_flinders_buninyong():
    lat, lon = geo.destination_point(*FLINDERS, _dms(306, 52, 5.37), 54972.271)
    # Published azimuth is rounded to 0.01" (~2.7 mm at 55 km).
    assert lat == pytest.approx(BUNINYONG[0], abs=1e-7)
    assert lon == pytest.approx(BUNINYONG[1], abs=1e-7)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(-80.0, 80.0),
    st.floats(-180.0, 180.0),
    st.floats(0.0, 360.0),
    st.floats(1.0, 50_000.0),
)
def test_destination_then_distance_round_trip(lat, lon, bearing, dist):
    lat2, lon2 = geo.destination_point(lat, lon, bearing, dist)
    assert -180.0 <= lon2 < 180.0
    d = geo.geodesic_distance_m(lat, lon, lat2, lon2)
    assert d == pytest.approx(dist, abs=1e-4)
    # Sphere vs ellipsoid: worst case is N-S at the equator (meridian radius
    # 6335 km vs mean radius 6371 km, 0.56%).
    assert geo.haversine_m(lat, lon, lat2, lon2) == pytest.approx(dist, rel=6e-3)


def test_distance_edge_cases():
    assert geo.geodesic_distance_m(10.0, 20.0, 10.0, 20.0) == 0.0
    # Equator: a quarter of the equatorial circumference.
    assert geo.geodesic_distance_m(0, 0, 0, 90) == pytest.approx(math.pi * geo.WGS84_A / 2)
    # Nearly antipodal: Vincenty may not converge, the fallback must still answer.
    d = geo.geodesic_distance_m(0.0, 0.0, 0.5, 179.7)
    assert 19_900_000 < d < 20_100_000


# -------------------------------------------------------------------------- EGM96

NGA_EGM96_CHECKS = [
    # NGA EGM96 test values: lat, lon (0..360), N metres.
    (38.6281550, 269.7791550, -31.628),
    (-14.6212170, 305.0211140, -2.969),
    (46.8743190, 102.4487290, -43.575),
    (-23.6174460, 133.8747120, 15.871),
    (38.6254730, 359.9995000, 50.066),
    (-0.4667440, 0.0023000, 17.329),
]


@pytest.mark.parametrize(("lat", "lon", "n"), NGA_EGM96_CHECKS)
def test_egm96_nga_check_values(lat, lon, n):
    # 5' grid + bilinear: measured worst case 5 mm on these points.
    assert geoid.geoid_undulation(lat, lon) == pytest.approx(n, abs=0.05)
    # Longitude convention does not matter.
    assert geoid.geoid_undulation(lat, lon - 360.0) == pytest.approx(
        geoid.geoid_undulation(lat, lon), abs=1e-9
    )


def test_egm96_chongqing_and_height_conversions():
    lat, lon = 29.5630, 106.5516
    n = geoid.geoid_undulation(lat, lon)
    # EGM96 gives about -38.8 m in central Chongqing (grid nodes around it: -38.6..-39.0).
    assert -39.2 < n < -38.3
    assert geoid.msl_to_ellipsoidal(lat, lon, 250.0) == pytest.approx(250.0 + n)
    assert geoid.ellipsoidal_to_msl(lat, lon, 250.0 + n) == pytest.approx(250.0)


def test_egm96_grid_edges_and_arrays():
    # Poles are single-valued, the antimeridian is continuous.
    assert geoid.geoid_undulation(90.0, 0.0) == pytest.approx(geoid.geoid_undulation(90.0, 123.0))
    assert geoid.geoid_undulation(0.0, 180.0) == pytest.approx(geoid.geoid_undulation(0.0, -180.0))
    assert geoid.geoid_undulation(10.0, 179.999) == pytest.approx(
        geoid.geoid_undulation(10.0, -180.001), abs=0.01
    )
    lats = np.array([38.6281550, -14.6212170])
    lons = np.array([269.7791550, 305.0211140])
    out = geoid.geoid_undulation(lats, lons)
    assert isinstance(out, np.ndarray) and out.shape == (2,)
    assert np.allclose(out, [-31.628, -2.969], atol=0.05)
    assert isinstance(geoid.geoid_undulation(0.0, 0.0), float)


def test_quaternion_from_matrix_round_trips():
    rng = np.random.default_rng(5)
    for _ in range(200):
        q = geo.quaternion_normalize(rng.normal(size=4))
        back = geo.quaternion_from_matrix(geo.quaternion_to_matrix(q))
        assert np.allclose(back, q, atol=1e-9) or np.allclose(back, -np.array(q), atol=1e-9)
        assert back[3] >= 0
    m = geo.trs_matrix((1, 2, 3), geo.heading_to_enu_quaternion(90), (2, 2, 2))
    assert np.allclose(m @ [0, 1, 0, 1], [1 + 2, 2, 3, 1], atol=1e-12)  # north -> east, x2
