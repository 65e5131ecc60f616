// On-device geofencing: the phone knows where it is, the server only ever learns a coarse
// H3 cell. A stop opens after the phone has been inside its radius for its dwell time, and
// closes only beyond its (larger) exit radius, so GPS jitter at the edge does not flap.

const EARTH_RADIUS_M = 6371008.8;

export function distanceM(lat1, lon1, lat2, lon2) {
  const rad = Math.PI / 180;
  const dLat = (lat2 - lat1) * rad;
  const dLon = (lon2 - lon1) * rad;
  const a = Math.sin(dLat / 2) ** 2
    + Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(a)));
}

export class Geofence {
  constructor() {
    this.stops = new Map(); // id -> {stop, since, inside}
  }

  // Stops from /v1/cells/{cell}: {id, tour, title, geopose: {position: {lat, lon}}, trigger}.
  add(stops) {
    for (const stop of stops) {
      if (!this.stops.has(stop.id)) this.stops.set(stop.id, { stop, since: null, inside: false });
    }
  }

  // One position fix; returns [{type: "enter"|"exit", stop, distance}] for what changed.
  update(lat, lon, now = Date.now()) {
    const changes = [];
    for (const entry of this.stops.values()) {
      const { position } = entry.stop.geopose;
      const trigger = entry.stop.trigger || {};
      const radius = trigger.radius_m ?? 50;
      const exit = Math.max(radius, trigger.exit_radius_m ?? radius * 1.4);
      const distance = distanceM(lat, lon, position.lat, position.lon);
      entry.distance = distance;
      if (entry.inside) {
        if (distance > exit) {
          entry.inside = false;
          entry.since = null;
          changes.push({ type: "exit", stop: entry.stop, distance });
        }
      } else if (distance <= radius) {
        entry.since ??= now;
        if (now - entry.since >= (trigger.dwell_s ?? 0) * 1000) {
          entry.inside = true;
          changes.push({ type: "enter", stop: entry.stop, distance });
        }
      } else {
        entry.since = null;
      }
    }
    return changes;
  }

  nearest() {
    return [...this.stops.values()].sort((a, b) => (a.distance ?? 1e12) - (b.distance ?? 1e12));
  }
}
