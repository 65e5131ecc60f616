// A stop's 3D scene in a <canvas>: picks the variant (tier) that fits the device, loads it
// with GLTFLoader (meshopt, quantized meshes, WebP textures), lights it for the night, frames
// the camera on it, and lets the visitor turn around it by pointer, touch or keyboard.
// The same renderer can enter an immersive-ar WebXR session and take live-event light cues.
import * as THREE from "three";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { MeshoptDecoder } from "three/addons/libs/meshopt_decoder.module.js";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { getJSON } from "./api.js";

// The night sky behind the model. Tests compare pixels against it (canvas.dataset.clear).
export const CLEAR_COLOR = "#0b1226";

// Required glTF extensions this loader setup can decode. A variant needing anything else
// (KTX2 without a transcoder, Draco) is skipped rather than failing to load.
const SUPPORTED_REQUIRED = new Set([
  "EXT_meshopt_compression", "KHR_mesh_quantization", "EXT_texture_webp",
  "KHR_texture_transform", "KHR_materials_emissive_strength", "EXT_mesh_gpu_instancing",
  "KHR_materials_unlit", "KHR_lights_punctual",
]);

// Which tier to try when the preferred one is missing or unusable, nearest first.
const FALLBACK = { low: ["low", "medium", "high"], medium: ["medium", "low", "high"],
  high: ["high", "medium", "low"] };

// The server's rules for /v1/scenes/{id}/glb (tourserver/model/variants.py), first match
// wins, fed from the browser's own signals instead of client-hint headers, plus the
// visitor's low-data setting, which counts like Save-Data.
export function chooseTier({ saveData = false, lowData = false, effectiveType = "",
  deviceMemory } = {}, fallback = "medium") {
  if (saveData || lowData) return "low";
  const ect = String(effectiveType || "").toLowerCase();
  const memory = typeof deviceMemory === "number" && deviceMemory > 0 ? deviceMemory : null;
  if (ect === "slow-2g" || ect === "2g") return "low";
  if (memory !== null && memory < 2) return "low";
  if (ect === "3g" || (memory !== null && memory < 4)) return "medium";
  if (ect === "4g" && memory !== null && memory >= 4) return "high";
  return fallback;
}

export function deviceTier(fallback = "medium") {
  const connection = navigator.connection || {};
  let lowData = false;
  try { lowData = localStorage.getItem("lowData") === "1"; } catch { /* storage blocked */ }
  return chooseTier({ saveData: connection.saveData === true, lowData,
    effectiveType: connection.effectiveType, deviceMemory: navigator.deviceMemory }, fallback);
}

export function pickVariant(variants, tier) {
  const usable = variants.filter((v) =>
    (v.extensions_required || []).every((ext) => SUPPORTED_REQUIRED.has(ext)));
  for (const name of FALLBACK[tier] || FALLBACK.medium) {
    const hit = usable.find((v) => v.tier === name);
    if (hit) return hit;
  }
  return usable[0] || null;
}

// Light-cue patterns (docs/live-protocol.md: steady, pulse, strobe, chase, off) as a 0..1
// level over time. `phase` (0..1) shifts a mesh along a chase around the scene.
function patternLevel(pattern, tMs, periodMs, phase = 0) {
  const cycle = ((tMs / periodMs) + 1 - phase) % 1;
  switch (pattern) {
    case "off": return 0;
    case "pulse": return 0.5 + 0.5 * Math.cos(2 * Math.PI * cycle);
    case "strobe": return cycle < 0.25 ? 1 : 0;
    case "chase": return Math.max(0.1, 1 - 3 * Math.min(cycle, 1 - cycle));
    default: return 1; // steady
  }
}

function disposeObject(root) {
  root.traverse((obj) => {
    obj.geometry?.dispose();
    const materials = Array.isArray(obj.material) ? obj.material : obj.material ? [obj.material] : [];
    for (const material of materials) {
      for (const value of Object.values(material)) if (value?.isTexture) value.dispose();
      material.dispose();
    }
  });
}

// Options: `tier` forces one; `now()` is the clock light patterns run on (a live event passes
// its shared server clock so every phone pulses together); `signal` aborts the download.
// What to frame: the model without its flat ground. A night scene often stands on a plaza
// or street plane far wider than the landmark (the demo's is 100 m across a 30 m tower);
// framing that would shrink the landmark to a dot. Null when nothing but ground is left.
function focusBox(model) {
  const box = new THREE.Box3();
  const part = new THREE.Box3();
  const size = new THREE.Vector3();
  model.traverse((obj) => {
    if (!obj.isMesh) return;
    part.setFromObject(obj).getSize(size);
    const flat = size.y < 0.02 * Math.max(size.x, size.z);
    if (!flat) box.union(part);
  });
  return box.isEmpty() ? null : box;
}

export async function mountScene(container, sceneId,
  { tier, now = () => Date.now(), signal } = {}) {
  const info = await getJSON(`/v1/scenes/${encodeURIComponent(sceneId)}`, { signal });
  const chosenTier = tier || deviceTier(info.default_tier || "medium");
  const variant = pickVariant(info.variants || [], chosenTier);
  if (!variant) throw new Error(`no variant of ${sceneId} this browser can load`);

  const lowTier = variant.tier === "low";
  let renderer;
  try {
    renderer = new THREE.WebGLRenderer({
      antialias: !lowTier, alpha: true, preserveDrawingBuffer: true,
      powerPreference: lowTier ? "low-power" : "default",
    });
  } catch (err) {
    throw new Error(`WebGL: ${err.message}`);
  }
  // A low tier also renders fewer pixels: phones with 3x screens pay for every one.
  renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, lowTier ? 1 : 2));
  renderer.setClearColor(CLEAR_COLOR, 1);
  renderer.outputColorSpace = THREE.SRGBColorSpace;
  renderer.toneMapping = THREE.ACESFilmicToneMapping;

  const canvas = renderer.domElement;
  canvas.classList.add("scene-canvas");
  canvas.tabIndex = 0; // OrbitControls listens for keys on the focused canvas
  canvas.setAttribute("role", "img");
  canvas.dataset.tier = variant.tier;
  canvas.dataset.clear = CLEAR_COLOR;
  canvas.dataset.bytes = String(variant.bytes ?? "");
  container.append(canvas);

  const scene = new THREE.Scene();
  // Moonlit sky above, dark street below, and a low moon for shape.
  const hemisphere = new THREE.HemisphereLight("#9fb4ff", "#1a1520", 1.2);
  const moon = new THREE.DirectionalLight("#cfd8ff", 1.4);
  moon.position.set(0.6, 1, 0.8);
  scene.add(hemisphere, moon);
  const baseHemisphere = hemisphere.color.clone();

  const camera = new THREE.PerspectiveCamera(50, 1, 0.1, 1000);
  const controls = new OrbitControls(camera, canvas);
  controls.enableDamping = true;
  controls.listenToKeyEvents(canvas);
  controls.autoRotateSpeed = 3; // one turn in 20 s in the 360° view

  let dirty = true;
  let disposed = false;
  controls.addEventListener("change", () => { dirty = true; });

  const resize = () => {
    const width = Math.max(1, container.clientWidth);
    const height = Math.max(1, Math.round(Math.min(width * 0.75, window.innerHeight * 0.6)));
    if (renderer.xr.isPresenting) return; // the XR session owns the size
    renderer.setSize(width, height, false);
    canvas.style.height = `${height}px`;
    camera.aspect = width / height;
    camera.updateProjectionMatrix();
    dirty = true;
  };
  const observer = new ResizeObserver(resize);
  observer.observe(container);
  resize();

  const release = () => {
    renderer.setAnimationLoop(null);
    observer.disconnect();
    controls.dispose();
    disposeObject(scene);
    renderer.dispose();
    // Browsers cap live WebGL contexts (about 16): give this one back now, not at GC.
    renderer.forceContextLoss();
    canvas.remove();
  };

  // Load the variant. A per-scene manager lets dispose() abort a download still running.
  const manager = new THREE.LoadingManager();
  const loader = new GLTFLoader(manager).setMeshoptDecoder(MeshoptDecoder);
  const abort = () => manager.abort();
  signal?.addEventListener("abort", abort, { once: true });
  let gltf;
  try {
    gltf = await loader.loadAsync(variant.url);
    signal?.throwIfAborted();
  } catch (err) {
    if (gltf) disposeObject(gltf.scene);
    release();
    throw err;
  } finally {
    signal?.removeEventListener("abort", abort);
  }
  const model = gltf.scene;
  const root = new THREE.Group(); // moved and scaled as a whole in AR
  root.add(model);
  scene.add(root);

  // Frame the camera on the landmark, from the front and a little above: far enough that its
  // height fits the vertical field of view and its width the horizontal one (so a portrait
  // phone still sees all of it), measured from its near side.
  const box = new THREE.Box3().setFromObject(model);
  const focus = focusBox(model) || box;
  const center = focus.getCenter(new THREE.Vector3());
  const extent = focus.getSize(new THREE.Vector3());
  const radius = Math.max(extent.length() / 2, 0.01);
  const across = Math.max(extent.x, extent.z, 0.02) / 2;
  const tanV = Math.tan(THREE.MathUtils.degToRad(camera.fov / 2));
  const distance = 1.1 * (across + Math.max(extent.y / 2 / tanV, across / (tanV * camera.aspect)));
  const home = center.clone().add(new THREE.Vector3(0.55, 0.35, 1).normalize().multiplyScalar(distance));
  camera.near = distance / 100;
  camera.far = distance * 100;
  camera.position.copy(home);
  camera.updateProjectionMatrix();
  controls.target.copy(center);
  controls.minDistance = radius * 0.2;
  controls.maxDistance = distance * 4;
  controls.maxPolarAngle = Math.PI * 0.495; // stay above the street
  controls.update();

  // Emissive surfaces are the scene's "show lights": a light cue tints and modulates them.
  // Each lit mesh gets its own material copy so a chase can run around the scene.
  const lit = [];
  model.traverse((obj) => {
    if (!obj.isMesh) return;
    const one = !Array.isArray(obj.material);
    const materials = one ? [obj.material] : obj.material;
    const copies = materials.map((material) => {
      const glows = material.emissive && (material.emissiveMap || material.emissive.getHex() !== 0);
      if (!glows) return material;
      const copy = material.clone();
      const p = new THREE.Box3().setFromObject(obj).getCenter(new THREE.Vector3()).sub(center);
      lit.push({ material: copy, emissive: material.emissive.clone(),
        strength: material.emissiveIntensity, phase: (Math.atan2(p.x, p.z) / (2 * Math.PI) + 1) % 1 });
      return copy;
    });
    obj.material = one ? copies[0] : copies;
  });
  let lights = { color: "#ffffff", intensity: 1, pattern: "steady", period_ms: 1000 };
  const tint = new THREE.Color();
  const applyLights = () => {
    tint.set(lights.color);
    const t = now();
    const period = Math.max(50, lights.period_ms || 1000);
    for (const entry of lit) {
      const level = patternLevel(lights.pattern, t, period, lights.pattern === "chase" ? entry.phase : 0);
      entry.material.emissive.copy(entry.emissive).multiply(tint);
      entry.material.emissiveIntensity = entry.strength * lights.intensity * level;
    }
    // A scene with nothing that glows shows the cue in its sky light instead.
    if (!lit.length) {
      const level = patternLevel(lights.pattern, t, period);
      hemisphere.color.copy(baseHemisphere).lerp(tint, 0.6);
      hemisphere.intensity = 0.4 + 0.8 * lights.intensity * level;
    }
    dirty = true;
  };

  let last = performance.now();
  let reported = "";
  renderer.setAnimationLoop((time) => {
    const delta = (time - last) / 1000;
    last = time;
    if (lights.pattern !== "steady" && lights.pattern !== "off") applyLights();
    if (!renderer.xr.isPresenting && !geo && controls.update(delta)) dirty = true;
    if (!dirty && !renderer.xr.isPresenting) return; // nothing moved: save the battery
    dirty = false;
    renderer.render(scene, camera);
    const triangles = String(renderer.info.render.triangles);
    if (triangles !== reported) canvas.dataset.triangles = reported = triangles;
  });

  // WebXR immersive-ar: the landmark a metre and a half ahead, scaled to about 1.2 m,
  // over the camera image. No hit-test yet: it floats where the session starts.
  let session = null;
  const enterAR = async ({ overlay } = {}) => {
    const init = { optionalFeatures: [] };
    if (overlay) { init.optionalFeatures.push("dom-overlay"); init.domOverlay = { root: overlay }; }
    session = await navigator.xr.requestSession("immersive-ar", init);
    renderer.xr.enabled = true;
    renderer.xr.setReferenceSpaceType("local");
    renderer.setClearColor(CLEAR_COLOR, 0); // show the world, not the night sky
    const size = focus.getSize(new THREE.Vector3());
    const scale = 1.2 / Math.max(size.x, size.y, size.z, 0.01);
    root.scale.setScalar(scale);
    root.position.set(-center.x * scale, -1.2 - focus.min.y * scale, -1.5 - center.z * scale);
    session.addEventListener("end", () => {
      session = null;
      renderer.xr.enabled = false;
      renderer.setClearColor(CLEAR_COLOR, 1);
      root.scale.setScalar(1);
      root.position.set(0, 0, 0);
      resize();
    });
    await renderer.xr.setSession(session);
    return session;
  };

  // Without WebXR: the scene placed at its GeoPose from the phone's location and compass,
  // drawn over the camera image. The world frame here is x east, y up, z south (-z north),
  // which is also the frame of absolute device-orientation angles, so no extra turn.
  let geo = null;
  const enterGeoAR = ({ quaternion }) => {
    geo = { near: camera.near, far: camera.far };
    controls.enabled = false;
    renderer.setClearColor(CLEAR_COLOR, 0);
    // The GeoPose orientation is in East-North-Up; the same rotation in x-east, y-up, z-south.
    root.quaternion.set(quaternion.x, quaternion.z, -quaternion.y, quaternion.w);
    camera.near = 0.1;
    camera.far = 20000;
    camera.updateProjectionMatrix();
    const euler = new THREE.Euler();
    const tilt = new THREE.Quaternion(-Math.SQRT1_2, 0, 0, Math.SQRT1_2); // the screen faces out
    const screen = new THREE.Quaternion();
    const zee = new THREE.Vector3(0, 0, 1);
    dirty = true;
    return {
      // The phone's offset from the anchor, metres east, north and up (eye height).
      setPosition(east, north, up) {
        camera.position.set(east, up, -north);
        Object.assign(canvas.dataset, { geoEast: east.toFixed(1), geoNorth: north.toFixed(1) });
        dirty = true;
      },
      // Absolute device orientation in degrees (alpha 0 = north), and the screen's angle.
      setOrientation(alpha, beta, gamma, screenAngle = 0) {
        const rad = Math.PI / 180;
        euler.set(beta * rad, alpha * rad, -gamma * rad, "YXZ");
        camera.quaternion.setFromEuler(euler).multiply(tilt)
          .multiply(screen.setFromAxisAngle(zee, -screenAngle * rad));
        canvas.dataset.geoHeading = String(Math.round((360 - alpha) % 360));
        dirty = true;
      },
      exit() {
        camera.near = geo.near;
        camera.far = geo.far;
        camera.updateProjectionMatrix();
        geo = null;
        controls.enabled = true;
        root.quaternion.identity();
        renderer.setClearColor(CLEAR_COLOR, 1);
        camera.position.copy(home);
        controls.target.copy(center);
        delete canvas.dataset.geoEast;
        delete canvas.dataset.geoNorth;
        delete canvas.dataset.geoHeading;
        resize();
        dirty = true;
      },
    };
  };

  const setAutoRotate = (on) => {
    controls.autoRotate = on;
    if (on) { // a full turn around the scene's centre, from the framed viewpoint
      controls.target.copy(center);
      camera.position.copy(home);
    }
    dirty = true;
  };

  return {
    renderer, scene, camera, controls, canvas, variant, tier: variant.tier,
    setLights(cue = {}) {
      lights = { ...lights, ...cue };
      applyLights();
    },
    setAutoRotate,
    enterAR,
    enterGeoAR,
    dispose() {
      if (disposed) return;
      disposed = true;
      session?.end().catch(() => {});
      manager.abort();
      release();
    },
  };
}
