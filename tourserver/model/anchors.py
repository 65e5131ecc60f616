"""Every form of an anchor that AR clients and geo viewers need, from one GeoPose."""

from __future__ import annotations

import numpy as np

from tourserver.model import geo, geoid
from tourserver.model.manifest import Anchor, GeoPose

GEOPOSE_MEDIA_TYPE = "application/geopose+json"


def quaternion_matrix(q: tuple[float, float, float, float]) -> np.ndarray:
    """3x3 rotation matrix of a unit quaternion (x, y, z, w)."""
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def pose_to_ecef_matrix(pose: GeoPose) -> np.ndarray:
    """4x4 from the scene's z-up local frame (glTF after the y-up→z-up turn) to ECEF."""
    m = geo.enu_to_ecef_matrix(pose.lat, pose.lon, pose.h)
    local = np.eye(4)
    local[:3, :3] = quaternion_matrix(pose.quaternion)
    return m @ local


def anchor_document(anchor: Anchor, *, tour: str, stop: str, kind: str) -> dict:
    pose = anchor.pose
    eus = geo.enu_quaternion_to_eus(pose.quaternion)
    return {
        "id": anchor.id,
        "tour": tour,
        "stop": stop,
        "kind": kind,
        "geopose": pose.to_json(),
        # ARCore Earth.createAnchor: WGS84 ellipsoidal altitude, East-Up-South quaternion.
        "arcore": {"latitude": pose.lat, "longitude": pose.lon, "altitude": pose.h,
                   "eus_quaternion": list(eus)},
        # ARKit ARGeoAnchor: altitude above mean sea level; same East-Up-South frame.
        "arkit": {"latitude": pose.lat, "longitude": pose.lon,
                  "altitude": round(geoid.ellipsoidal_to_msl(pose.lat, pose.lon, pose.h), 3),
                  "eus_quaternion": list(eus)},
        # 3D Tiles tile transform (column-major), ENU at the anchor -> ECEF, heading included.
        "enu_to_ecef": geo.column_major(pose_to_ecef_matrix(pose)),
        "geoid_undulation_m": round(geoid.geoid_undulation(pose.lat, pose.lon), 3),
        "input": {"datum": anchor.input_datum, "height": anchor.input_height},
        "links": {"self": f"/v1/anchors/{anchor.id}",
                  "geopose": f"/v1/anchors/{anchor.id}/geopose"},
    }
