// "View in AR" where the phone has no WebXR: the stop's scene placed at its GeoPose from the
// phone's own location and compass, over the camera image. Everything stays on the phone
// (the position is never sent anywhere). It is only as good as the phone's sensors: a few
// metres of GPS error and several degrees of compass error, which the page says plainly.

const EARTH_RADIUS_M = 6371008.8;
const EYE_HEIGHT_M = 1.6;

// The phone's offset from the anchor in metres east and north (flat Earth: fine at the few
// hundred metres a scene is seen from).
export function offsetFrom(anchor, lat, lon) {
  const rad = Math.PI / 180;
  return {
    east: (lon - anchor.lon) * rad * EARTH_RADIUS_M * Math.cos(anchor.lat * rad),
    north: (lat - anchor.lat) * rad * EARTH_RADIUS_M,
  };
}

// Starts the mode on a mounted scene (scene.js). `onStatus(key, vars)` reports what the
// tourist should know; returns stop().
export async function startGeoAR(container, mounted, geopose, onStatus) {
  const placement = mounted.enterGeoAR({ quaternion: geopose.quaternion });
  const anchor = geopose.position;
  const video = document.createElement("video");
  video.className = "geoar-video";
  video.muted = true;
  video.playsInline = true;
  video.setAttribute("aria-hidden", "true");
  container.prepend(video);
  container.classList.add("geoar");
  let stream = null;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
    video.srcObject = stream;
    await video.play();
  } catch {
    onStatus("geoar.nocamera"); // the scene still shows, over the night sky's transparency
  }
  // iOS asks for motion sensors on a user gesture; elsewhere this does not exist.
  if (typeof DeviceOrientationEvent !== "undefined"
      && typeof DeviceOrientationEvent.requestPermission === "function") {
    await DeviceOrientationEvent.requestPermission().catch(() => "denied");
  }
  const screenAngle = () => screen.orientation?.angle ?? 0;
  const onOrientation = (event) => {
    // Absolute angles (alpha 0 = north): Chrome's deviceorientationabsolute, or iOS's
    // compass heading. A relative alpha would point the scene the wrong way: skip it.
    let alpha = null;
    if (typeof event.webkitCompassHeading === "number") alpha = 360 - event.webkitCompassHeading;
    else if (event.absolute && event.alpha !== null) alpha = event.alpha;
    if (alpha === null || event.beta === null) return;
    placement.setOrientation(alpha, event.beta, event.gamma ?? 0, screenAngle());
  };
  const orientationEvent = "ondeviceorientationabsolute" in window
    ? "deviceorientationabsolute" : "deviceorientation";
  window.addEventListener(orientationEvent, onOrientation);
  const watch = navigator.geolocation?.watchPosition((position) => {
    const { latitude, longitude, accuracy } = position.coords;
    const { east, north } = offsetFrom(anchor, latitude, longitude);
    placement.setPosition(east, north, EYE_HEIGHT_M);
    onStatus("geoar.accuracy", { m: Math.round(accuracy) });
  }, () => onStatus("geoar.nolocation"), { enableHighAccuracy: true, maximumAge: 2000 });
  onStatus("geoar.starting");
  return () => {
    window.removeEventListener(orientationEvent, onOrientation);
    if (watch != null) navigator.geolocation.clearWatch(watch);
    stream?.getTracks().forEach((track) => track.stop());
    video.remove();
    container.classList.remove("geoar");
    placement.exit();
  };
}
