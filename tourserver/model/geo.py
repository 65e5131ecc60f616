"""Pure geodesy maths for geo-anchored scenes (WGS84, ENU/EUS frames, GCJ-02).

Everything here is float64 numpy maths: no I/O, no aiohttp, no global state.

Orientation convention (read this before touching any quaternion)
=================================================================

* A scene is a glTF asset, so its own frame is **+Y up**, right-handed, and its
  "forward" is **-Z** (glTF/three.js camera convention).
* A scene's **heading** is the compass bearing, in degrees clockwise from true
  north, that the scene's -Z axis points to. Heading 90 means -Z points east.
* Quaternions are Hamilton quaternions stored as ``(x, y, z, w)`` (the order of
  glTF, ARCore, ARKit and the GeoPose JSON keys). ``q`` is *active*: it rotates a
  vector given in the object frame into the outer frame, ``v_outer = q v_obj q*``.
* **ENU quaternion** (what we publish as an OGC GeoPose Basic-Quaternion): the
  outer frame is the local tangent plane East-North-Up at the anchor (x=E, y=N,
  z=U). The object frame is z-up, obtained from glTF with the standard y-up ->
  z-up rotation that 3D Tiles applies to glTF content, a +90 deg rotation about X:
  glTF ``(x, y, z) -> (x, -z, y)``. Therefore glTF -Z maps to +N, glTF +Y to +U,
  and heading 0 is the identity ``(0, 0, 0, 1)``. Heading ``h`` is a rotation
  about Up by ``-h`` (compass bearings turn clockwise seen from above, the
  right-hand rule about +U turns counter-clockwise): ``(0, 0, -sin(h/2), cos(h/2))``.
* **EUS quaternion** (ARCore Geospatial ``createAnchor`` / ``GeospatialPose`` and
  ARKit geo anchors): outer frame East-Up-South (x=E, y=U, z=S) and the object
  frame is the glTF frame itself, so identity = scene with -Z facing north and
  +Y up. Heading ``h`` gives ``(0, -sin(h/2), 0, cos(h/2))``.

What was checked against OGC GeoPose 1.0 (OGC 21-056r11, "Data Exchange
Standard"; source text in github.com/opengeospatial/GeoPose, standard/standard/):
the Basic-Quaternion target has an implicit WGS-84 (EPSG:4979, height above the
ellipsoid) outer frame with an LTP-ENU coordinate system (EPSG 4461-CS) at the
tangent point; the quaternion "is applied to an initial reference frame oriented
East-North-Up (ENU) coordinate system where the coordinate axes East, North,
and Up correspond to the axes X, Y, Z"; it is a unit quaternion and the JSON
encoding uses named members ``x, y, z, w`` (the logical model lists them as
w, x, y, z, so the *order* is only a storage choice; names are what count).
Basic-YPR defines yaw as the rotation about the ENU Z (up) axis. The standard
does not say which object axis is "forward"; the glTF -Z / y-up->z-up mapping
above is our (3D Tiles compatible) choice and must stay consistent with the
client. Nothing in the spec contradicts the convention above.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

Quaternion = tuple[float, float, float, float]

# WGS84 defining parameters (NIMA TR8350.2). Everything derived from them below.
WGS84_A: float = 6378137.0
WGS84_F: float = 1.0 / 298.257223563
WGS84_B: float = WGS84_A * (1.0 - WGS84_F)
WGS84_E2: float = WGS84_F * (2.0 - WGS84_F)  # first eccentricity squared
WGS84_EP2: float = WGS84_E2 / (1.0 - WGS84_E2)  # second eccentricity squared

# Arithmetic-mean Earth radius (2a+b)/3, used only by the spherical fallback.
_MEAN_RADIUS_M = (2.0 * WGS84_A + WGS84_B) / 3.0


# --------------------------------------------------------------------------- ECEF


def geodetic_to_ecef(lat_deg: float, lon_deg: float, h_m: float) -> np.ndarray:
    """WGS84 geodetic (deg, deg, metres above ellipsoid) -> ECEF metres, shape (3,)."""
    lat = math.radians(lat_deg)
    lon = math.radians(lon_deg)
    sin_lat, cos_lat = math.sin(lat), math.cos(lat)
    n = WGS84_A / math.sqrt(1.0 - WGS84_E2 * sin_lat * sin_lat)  # prime-vertical radius
    return np.array(
        [
            (n + h_m) * cos_lat * math.cos(lon),
            (n + h_m) * cos_lat * math.sin(lon),
            (n * (1.0 - WGS84_E2) + h_m) * sin_lat,
        ],
        dtype=np.float64,
    )


def ecef_to_geodetic(xyz: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """ECEF metres -> WGS84 ``(lat_deg, lon_deg, h_m)``.

    Heikkinen's (1982) exact closed form for the latitude, then the height from
    the well-conditioned projection ``h = p cos(lat) + z sin(lat) - a sqrt(1 - e2
    sin^2 lat)`` rather than Heikkinen's ``U (1 - b^2 / (a V))``. Measured round
    trips (geodetic -> ECEF -> geodetic, 20,000 random points per band) are
    < 3e-8 m in h and < 3e-14 deg in latitude for h from -3,000 km to +40,000 km;
    no iteration, so the cost is fixed.
    """
    x, y, z = (float(c) for c in np.asarray(xyz, dtype=np.float64).reshape(3))
    a, b, e2, ep2 = WGS84_A, WGS84_B, WGS84_E2, WGS84_EP2
    p = math.hypot(x, y)
    lon = math.atan2(y, x)
    if p < 1e-9:
        # On the polar axis the closed form divides by p; the answer is trivial.
        lat = math.copysign(math.pi / 2.0, z) if z != 0.0 else 0.0
        return math.degrees(lat), 0.0, abs(z) - b
    f_ = 54.0 * b * b * z * z
    g = p * p + (1.0 - e2) * z * z - e2 * (a * a - b * b)
    c = e2 * e2 * f_ * p * p / (g * g * g)
    s = math.cbrt(1.0 + c + math.sqrt(c * c + 2.0 * c))
    k = s + 1.0 + 1.0 / s
    pp = f_ / (3.0 * k * k * g * g)
    q = math.sqrt(1.0 + 2.0 * e2 * e2 * pp)
    r0 = -(pp * e2 * p) / (1.0 + q) + math.sqrt(
        max(
            0.5 * a * a * (1.0 + 1.0 / q)
            - pp * (1.0 - e2) * z * z / (q * (1.0 + q))
            - 0.5 * pp * p * p,
            0.0,
        )
    )
    v = math.sqrt((p - e2 * r0) ** 2 + (1.0 - e2) * z * z)
    z0 = b * b * z / (a * v)
    lat = math.atan2(z + ep2 * z0, p)
    sin_lat, cos_lat = math.sin(lat), math.cos(lat)
    h = p * cos_lat + z * sin_lat - a * math.sqrt(1.0 - e2 * sin_lat * sin_lat)
    return math.degrees(lat), math.degrees(lon), h


# ------------------------------------------------------------------------ ENU frame


def enu_to_ecef_matrix(lat_deg: float, lon_deg: float, h_m: float) -> np.ndarray:
    """4x4 ENU -> ECEF transform at a geodetic point (Cesium ``eastNorthUpToFixedFrame``).

    Columns are East, North, Up (the ellipsoid normal) and the ECEF origin, so
    ``M @ [e, n, u, 1]`` is the ECEF position of a local ENU offset. This is the
    matrix 3D Tiles expects in a tile ``transform`` (after :func:`column_major`).
    Unlike Cesium we do not special-case the poles: East is always
    ``(-sin lon, cos lon, 0)``, well defined for any given longitude.
    """
    lat = math.radians(lat_deg)
    lon = math.radians(lon_deg)
    sl, cl = math.sin(lat), math.cos(lat)
    so, co = math.sin(lon), math.cos(lon)
    m = np.eye(4, dtype=np.float64)
    m[:3, 0] = (-so, co, 0.0)
    m[:3, 1] = (-sl * co, -sl * so, cl)
    m[:3, 2] = (cl * co, cl * so, sl)
    m[:3, 3] = geodetic_to_ecef(lat_deg, lon_deg, h_m)
    return m


def column_major(m: np.ndarray) -> list[float]:
    """Flatten a 4x4 matrix column by column (glTF / 3D Tiles ``transform`` order)."""
    arr = np.asarray(m, dtype=np.float64)
    if arr.shape != (4, 4):
        raise ValueError(f"expected a 4x4 matrix, got shape {arr.shape}")
    return [float(v) for v in arr.T.reshape(16)]


# ---------------------------------------------------------------------- quaternions


def quaternion_normalize(q: Sequence[float]) -> Quaternion:
    """Return ``q / |q|`` as ``(x, y, z, w)``; raises ``ValueError`` for a zero quaternion."""
    arr = np.asarray(q, dtype=np.float64).reshape(4)
    norm = float(np.linalg.norm(arr))
    if not math.isfinite(norm) or norm < 1e-12:
        raise ValueError(f"cannot normalise quaternion {tuple(arr)}")
    x, y, z, w = (float(c) for c in arr / norm)
    return x, y, z, w


def is_unit_quaternion(q: Sequence[float], tol: float = 1e-6) -> bool:
    """True if ``q`` has 4 finite components and ``| |q| - 1 | <= tol``."""
    try:
        arr = np.asarray(q, dtype=np.float64).reshape(4)
    except (TypeError, ValueError):
        return False
    if not np.all(np.isfinite(arr)):
        return False
    return abs(float(np.linalg.norm(arr)) - 1.0) <= tol


def quaternion_multiply(a: Sequence[float], b: Sequence[float]) -> Quaternion:
    """Hamilton product ``a * b`` (apply ``b`` first, then ``a``), ``(x, y, z, w)`` order."""
    ax, ay, az, aw = (float(c) for c in a)
    bx, by, bz, bw = (float(c) for c in b)
    return (
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
        aw * bw - ax * bx - ay * by - az * bz,
    )


def quaternion_to_matrix(q: Sequence[float]) -> np.ndarray:
    """3x3 rotation matrix of (normalised) ``q``, so that ``R @ v == rotate(q, v)``."""
    x, y, z, w = quaternion_normalize(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ],
        dtype=np.float64,
    )


def quaternion_rotate(q: Sequence[float], v: Sequence[float]) -> np.ndarray:
    """Rotate the 3-vector ``v`` by ``q`` (active rotation, ``q v q*``)."""
    return quaternion_to_matrix(q) @ np.asarray(v, dtype=np.float64).reshape(3)


def heading_to_enu_quaternion(heading_deg: float) -> Quaternion:
    """GeoPose (ENU) quaternion for a scene whose glTF -Z points to compass ``heading_deg``.

    Rotation about Up by ``-heading`` (see the module docstring):
    ``(0, 0, -sin(h/2), cos(h/2))``. The heading is first wrapped to (-180, 180]
    so the result always has ``w >= 0``: equal headings give byte-identical JSON
    (270 deg yields the same quaternion as -90 deg, not its negation).
    """
    h = math.fmod(float(heading_deg), 360.0)
    if h > 180.0:
        h -= 360.0
    elif h <= -180.0:
        h += 360.0
    half = math.radians(h) / 2.0
    return 0.0, 0.0, -math.sin(half), math.cos(half)


def enu_quaternion_to_eus(q: Sequence[float]) -> Quaternion:
    """Express an ENU (GeoPose, z-up object) orientation in EUS (ARCore/ARKit, glTF object).

    With ``M`` the glTF y-up -> z-up rotation (+90 deg about X) and ``P`` the
    ENU -> EUS axis relabelling ``(e, n, u) -> (e, u, -n)``, the EUS rotation is
    ``P R_enu M``. Here ``P == M^-1`` (both frames differ from ENU/z-up by the same
    +90 deg turn about East/X), so this is a change of basis: the quaternion keeps
    ``w`` and its axis is rotated by ``M^-1``: ``(x, y, z, w) -> (x, z, -y, w)``.
    For a heading this gives ``(0, -sin(h/2), 0, cos(h/2))``.
    """
    x, y, z, w = quaternion_normalize(q)
    return x, z, -y, w


def eus_quaternion_to_enu(q: Sequence[float]) -> Quaternion:
    """Inverse of :func:`enu_quaternion_to_eus`: ``(x, y, z, w) -> (x, -z, y, w)``."""
    x, y, z, w = quaternion_normalize(q)
    return x, -z, y, w


# --------------------------------------------------------------------------- GCJ-02
#
# GCJ-02 ("Mars coordinates") is the legally mandated obfuscated datum for maps
# published in mainland China (AMap/Gaode, Tencent, Google Maps China tiles). It
# is WGS84 plus a smooth, deliberately non-physical offset of a few hundred
# metres. The algorithm below is the widely reimplemented one (eviltransform,
# coordtransform) with the Krasovsky semi-major axis 6378245 m as in the original.
#
# The offset is only applied inside a rough rectangular bounding box of China
# (the same box every public implementation uses). Outside it both directions
# are the identity. The box is coarse: it also covers Taiwan, Hong Kong, Macau
# and slices of neighbouring countries, where GCJ-02 is not legally used; we
# follow the common practice and still apply the offset there.

_GCJ_A = 6378245.0
_GCJ_EE = 0.00669342162296594323
_CHINA_LON = (72.004, 137.8347)
_CHINA_LAT = (0.8293, 55.8271)


def _outside_china(lat: float, lon: float) -> bool:
    return not (_CHINA_LON[0] <= lon <= _CHINA_LON[1] and _CHINA_LAT[0] <= lat <= _CHINA_LAT[1])


def in_gcj02_area(lat: float, lon: float) -> bool:
    """Whether GCJ-02 applies at ``(lat, lon)``: the same coarse box the conversions use,
    so a point is converted exactly when this is True (see the note above on its extent)."""
    return not _outside_china(lat, lon)


def _gcj_offset(lat: float, lon: float) -> tuple[float, float]:
    """GCJ-02 minus WGS84, in degrees, at a WGS84 point (no bounding-box test)."""
    x, y = lon - 105.0, lat - 35.0
    xpi, ypi = x * math.pi, y * math.pi
    common = 20.0 * math.sin(6.0 * xpi) + 20.0 * math.sin(2.0 * xpi)
    dlat = common + 20.0 * math.sin(ypi) + 40.0 * math.sin(ypi / 3.0)
    dlat += 160.0 * math.sin(ypi / 12.0) + 320.0 * math.sin(ypi / 30.0)
    dlon = common + 20.0 * math.sin(xpi) + 40.0 * math.sin(xpi / 3.0)
    dlon += 150.0 * math.sin(xpi / 12.0) + 300.0 * math.sin(xpi / 30.0)
    dlat = dlat * 2.0 / 3.0 - 100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y
    dlat += 0.2 * math.sqrt(abs(x))
    dlon = dlon * 2.0 / 3.0 + 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y
    dlon += 0.1 * math.sqrt(abs(x))
    # The polynomial gives "metres"; scale by the ellipsoid's meridian and
    # parallel radii to degrees.
    rad_lat = math.radians(lat)
    magic = 1.0 - _GCJ_EE * math.sin(rad_lat) ** 2
    sqrt_magic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_GCJ_A * (1.0 - _GCJ_EE)) / (magic * sqrt_magic) * math.pi)
    dlon = (dlon * 180.0) / (_GCJ_A / sqrt_magic * math.cos(rad_lat) * math.pi)
    return dlat, dlon


def wgs84_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """WGS84 -> GCJ-02 ``(lat, lon)`` in degrees; identity outside the China box."""
    if _outside_china(lat, lon):
        return float(lat), float(lon)
    dlat, dlon = _gcj_offset(lat, lon)
    return lat + dlat, lon + dlon


def gcj02_to_wgs84(lat: float, lon: float) -> tuple[float, float]:
    """GCJ-02 -> WGS84 ``(lat, lon)``: exact inverse of :func:`wgs84_to_gcj02`.

    Fixed-point iteration ``w <- g - offset(w)``. The offset's Jacobian is ~1e-4,
    so each step gains ~4 digits; we stop below 1e-12 deg (~0.1 um), i.e. the
    forward transform of the result reproduces the input to ~1e-12 deg (the
    simple one-step inverse many libraries ship is only good to ~1-2 m).
    Identity outside the China box (tested on the GCJ-02 input).
    """
    if _outside_china(lat, lon):
        return float(lat), float(lon)
    w_lat, w_lon = float(lat), float(lon)
    for _ in range(30):
        dlat, dlon = _gcj_offset(w_lat, w_lon)
        n_lat, n_lon = lat - dlat, lon - dlon
        done = abs(n_lat - w_lat) < 1e-12 and abs(n_lon - w_lon) < 1e-12
        w_lat, w_lon = n_lat, n_lon
        if done:
            break
    return w_lat, w_lon


# ------------------------------------------------------------------------ distances


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres on a sphere of the WGS84 mean radius.

    Cheap, but up to ~0.6% off the ellipsoid (worst: north-south near the
    equator, where the meridian radius is 6335 km vs the 6371 km mean); prefer
    :func:`geodesic_distance_m` when the number is shown to a user or used for
    geofencing.
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lon2 - lon1)
    a = math.sin(dp / 2.0) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2.0) ** 2
    return 2.0 * _MEAN_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def geodesic_distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Ellipsoidal (WGS84) distance in metres, Vincenty's inverse formula (~0.1 mm).

    Vincenty fails to converge only for nearly antipodal points (>19,000 km
    apart); there we fall back to :func:`haversine_m` (< 0.6% error), which is
    irrelevant for city tours but keeps the function total.
    """
    if lat1 == lat2 and lon1 == lon2:
        return 0.0
    a, b, f = WGS84_A, WGS84_B, WGS84_F
    u1 = math.atan((1.0 - f) * math.tan(math.radians(lat1)))
    u2 = math.atan((1.0 - f) * math.tan(math.radians(lat2)))
    big_l = math.radians(lon2 - lon1)
    su1, cu1, su2, cu2 = math.sin(u1), math.cos(u1), math.sin(u2), math.cos(u2)
    lam = big_l
    for _ in range(200):
        sl, cl = math.sin(lam), math.cos(lam)
        sin_sigma = math.hypot(cu2 * sl, cu1 * su2 - su1 * cu2 * cl)
        if sin_sigma == 0.0:
            return 0.0  # coincident points
        cos_sigma = su1 * su2 + cu1 * cu2 * cl
        sigma = math.atan2(sin_sigma, cos_sigma)
        sin_alpha = cu1 * cu2 * sl / sin_sigma
        cos2_alpha = 1.0 - sin_alpha * sin_alpha
        # On the equator cos2_alpha == 0 and the term is irrelevant.
        cos_2sm = cos_sigma - 2.0 * su1 * su2 / cos2_alpha if cos2_alpha != 0.0 else 0.0
        c = f / 16.0 * cos2_alpha * (4.0 + f * (4.0 - 3.0 * cos2_alpha))
        lam_prev = lam
        lam = big_l + (1.0 - c) * f * sin_alpha * (
            sigma + c * sin_sigma * (cos_2sm + c * cos_sigma * (-1.0 + 2.0 * cos_2sm**2))
        )
        if abs(lam - lam_prev) < 1e-12:
            break
    else:
        return haversine_m(lat1, lon1, lat2, lon2)
    u_sq = cos2_alpha * (a * a - b * b) / (b * b)
    big_a = 1.0 + u_sq / 16384.0 * (4096.0 + u_sq * (-768.0 + u_sq * (320.0 - 175.0 * u_sq)))
    big_b = u_sq / 1024.0 * (256.0 + u_sq * (-128.0 + u_sq * (74.0 - 47.0 * u_sq)))
    delta_sigma = (
        big_b
        * sin_sigma
        * (
            cos_2sm
            + big_b
            / 4.0
            * (
                cos_sigma * (-1.0 + 2.0 * cos_2sm**2)
                - big_b / 6.0 * cos_2sm * (-3.0 + 4.0 * sin_sigma**2) * (-3.0 + 4.0 * cos_2sm**2)
            )
        )
    )
    return b * big_a * (sigma - delta_sigma)


def destination_point(
    lat: float, lon: float, bearing_deg: float, distance_m: float
) -> tuple[float, float]:
    """Point reached from ``(lat, lon)`` after ``distance_m`` along the WGS84 geodesic
    with initial compass bearing ``bearing_deg`` (Vincenty's direct formula, ~0.1 mm).

    Returns ``(lat, lon)`` in degrees with lon wrapped to [-180, 180).
    """
    a, b, f = WGS84_A, WGS84_B, WGS84_F
    alpha1 = math.radians(bearing_deg)
    sa1, ca1 = math.sin(alpha1), math.cos(alpha1)
    tan_u1 = (1.0 - f) * math.tan(math.radians(lat))
    cu1 = 1.0 / math.sqrt(1.0 + tan_u1 * tan_u1)
    su1 = tan_u1 * cu1
    sigma1 = math.atan2(tan_u1, ca1)
    sin_alpha = cu1 * sa1
    cos2_alpha = 1.0 - sin_alpha * sin_alpha
    u_sq = cos2_alpha * (a * a - b * b) / (b * b)
    big_a = 1.0 + u_sq / 16384.0 * (4096.0 + u_sq * (-768.0 + u_sq * (320.0 - 175.0 * u_sq)))
    big_b = u_sq / 1024.0 * (256.0 + u_sq * (-128.0 + u_sq * (74.0 - 47.0 * u_sq)))
    sigma = distance_m / (b * big_a)
    for _ in range(200):
        cos_2sm = math.cos(2.0 * sigma1 + sigma)
        s_sig, c_sig = math.sin(sigma), math.cos(sigma)
        delta_sigma = (
            big_b
            * s_sig
            * (
                cos_2sm
                + big_b
                / 4.0
                * (
                    c_sig * (-1.0 + 2.0 * cos_2sm**2)
                    - big_b / 6.0 * cos_2sm * (-3.0 + 4.0 * s_sig**2) * (-3.0 + 4.0 * cos_2sm**2)
                )
            )
        )
        sigma_prev = sigma
        sigma = distance_m / (b * big_a) + delta_sigma
        if abs(sigma - sigma_prev) < 1e-12:
            break
    cos_2sm = math.cos(2.0 * sigma1 + sigma)
    s_sig, c_sig = math.sin(sigma), math.cos(sigma)
    tmp = su1 * s_sig - cu1 * c_sig * ca1
    lat2 = math.atan2(su1 * c_sig + cu1 * s_sig * ca1, (1.0 - f) * math.hypot(sin_alpha, tmp))
    lam = math.atan2(s_sig * sa1, cu1 * c_sig - su1 * s_sig * ca1)
    c = f / 16.0 * cos2_alpha * (4.0 + f * (4.0 - 3.0 * cos2_alpha))
    big_l = lam - (1.0 - c) * f * sin_alpha * (
        sigma + c * s_sig * (cos_2sm + c * c_sig * (-1.0 + 2.0 * cos_2sm**2))
    )
    lon2 = (lon + math.degrees(big_l) + 180.0) % 360.0 - 180.0
    return math.degrees(lat2), lon2


def quaternion_from_matrix(m: np.ndarray) -> Quaternion:
    """(x, y, z, w) of a 3x3 rotation matrix (Shepperd's method: stable for every angle),
    with w >= 0."""
    m = np.asarray(m, dtype=np.float64)[:3, :3]
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = math.sqrt(trace + 1.0) * 2
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4)
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = (s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s)
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = ((m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s)
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = ((m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s)
    x, y, z, w = quaternion_normalize(q)
    return (x, y, z, w) if w >= 0 else (-x, -y, -z, -w)


def trs_matrix(translation: Sequence[float] = (0.0, 0.0, 0.0),
               rotation: Sequence[float] = (0.0, 0.0, 0.0, 1.0),
               scale: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """4x4 T * R * S, as glTF composes a node's transform; rotation is (x, y, z, w)."""
    m = np.eye(4)
    m[:3, :3] = quaternion_to_matrix(rotation) * np.asarray(scale, dtype=np.float64)
    m[:3, 3] = translation
    return m


# ----------------------------------------------------------------------- point sets
# Rules that compare many points (stops with each other, stops with a route) work with
# unit vectors on a sphere of the mean radius: ~0.5 % off the ellipsoid, irrelevant for
# thresholds of hundreds of metres and more. There is no local projection, so an arc of
# any length (a route point typed in the wrong hemisphere) is measured correctly. Point
# arrays are (n, 2) of (lat, lon) in degrees; work is chunked, so memory stays bounded.

_CHUNK = 1 << 20  # matrix entries per chunk (8 MB of float64)


def unit_vectors(latlon: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """(n, 3) unit vectors (x towards lon 0, z towards the north pole) of (lat, lon) rows."""
    a = np.radians(np.asarray(latlon, dtype=np.float64).reshape(-1, 2))
    cos_lat = np.cos(a[:, 0])
    return np.column_stack((cos_lat * np.cos(a[:, 1]), cos_lat * np.sin(a[:, 1]),
                            np.sin(a[:, 0])))


def _chord_to_m(chord: np.ndarray) -> np.ndarray:
    return 2.0 * _MEAN_RADIUS_M * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))


def _m_to_chord(distance_m: float) -> float:
    return 2.0 * math.sin(min(math.pi, max(0.0, distance_m) / _MEAN_RADIUS_M) / 2.0)


def nearest_distances_m(points: Sequence[Sequence[float]] | np.ndarray,
                        refs: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Great-circle distance in metres from each point to its nearest ref (inf if none)."""
    p, r = unit_vectors(points), unit_vectors(refs)
    out = np.full(len(p), np.inf)
    if len(r) == 0:
        return out
    step = max(1, _CHUNK // len(r))
    for i in range(0, len(p), step):
        dots = np.max(p[i:i + step] @ r.T, axis=1)
        out[i:i + step] = _chord_to_m(np.sqrt(np.maximum(0.0, 2.0 - 2.0 * dots)))
    return out


def polyline_distances_m(points: Sequence[Sequence[float]] | np.ndarray,
                         line: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Distance in metres from each point to the polyline of great-circle arcs through the
    (lat, lon) vertices of `line`, in order (inf if `line` is empty).

    Where a point projects inside an arc this is its cross-track distance, otherwise the
    distance to the nearest vertex; exact on the sphere for arcs of any length below 180°.
    """
    out = nearest_distances_m(points, line)
    v = unit_vectors(line)
    if len(v) < 2 or len(out) == 0:
        return out
    a, b = v[:-1], v[1:]
    normal = np.cross(a, b)
    norm = np.linalg.norm(normal, axis=1)
    # Repeated (or antipodal) vertices span no single arc; their vertices count already.
    keep = norm > 1e-12
    if not keep.any():
        return out
    normal = normal[keep] / norm[keep, None]
    # A point's foot on the great circle lies on the arc a->b iff it is turned from a, and
    # b from it, by 0..180° about the normal: both triple products are >= 0.
    from_a, to_b = np.cross(normal, a[keep]), np.cross(b[keep], normal)
    p = unit_vectors(points)
    step = max(1, _CHUNK // len(normal))
    for i in range(0, len(p), step):
        chunk = p[i:i + step]
        inside = (chunk @ from_a.T >= 0.0) & (chunk @ to_b.T >= 0.0)
        sin_xt = np.where(inside, np.abs(chunk @ normal.T), 2.0).min(axis=1)
        cross_track = np.where(sin_xt <= 1.0,
                               _MEAN_RADIUS_M * np.arcsin(np.minimum(sin_xt, 1.0)), np.inf)
        out[i:i + step] = np.minimum(out[i:i + step], cross_track)
    return out


def link_clusters(points: Sequence[Sequence[float]] | np.ndarray,
                  link_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Single-linkage clusters of (lat, lon) points: joined by any chain of hops of at most
    `link_m` metres (great circle).

    Returns ``(labels, linked)``: ``labels[i]`` is the smallest index in point i's cluster;
    ``linked[i]`` says whether another point lies within `link_m` of point i. Points go
    into a grid of cubes over their unit vectors, with sides chord/sqrt(3): two points in
    one cube are always linked and a link spans at most 2 cubes per axis, so spread-out
    points cost O(n) and no n x n matrix is ever built.
    """
    u = unit_vectors(points)
    n = len(u)
    parent = list(range(n))
    linked = np.zeros(n, dtype=bool)
    chord = _m_to_chord(link_m)
    limit = chord * chord * (1.0 + 1e-9)
    side = max(chord / math.sqrt(3.0), 1e-9)
    cells: dict[tuple[int, ...], list[int]] = {}
    for i, key in enumerate(np.floor(u / side).astype(np.int64).tolist()):
        cells.setdefault(tuple(key), []).append(i)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    for members in cells.values():
        for j in members[1:]:
            union(members[0], j)
        if len(members) > 1:
            linked[members] = True
    offsets = [o for o in itertools.product(range(-2, 3), repeat=3) if o > (0, 0, 0)]
    for key, members in cells.items():
        mine = np.asarray(members)
        for dx, dy, dz in offsets:
            other = cells.get((key[0] + dx, key[1] + dy, key[2] + dz))
            if other is None:
                continue
            theirs = np.asarray(other)
            step = max(1, _CHUNK // (3 * len(theirs)))
            for i in range(0, len(mine), step):
                if (find(members[0]) == find(other[0]) and linked[mine].all()
                        and linked[theirs].all()):
                    break  # nothing left to learn from this pair of cubes
                rows = mine[i:i + step]
                d2 = ((u[rows, None, :] - u[None, theirs, :]) ** 2).sum(axis=2)
                close = d2 <= limit
                if close.any():
                    union(members[0], other[0])
                    linked[rows[close.any(axis=1)]] = True
                    linked[theirs[close.any(axis=0)]] = True
    return np.asarray([find(i) for i in range(n)], dtype=np.intp), linked
