// The "download for offline" control of a tour page: shows the pack's size first, asks the
// service worker to cache every file of it (and the app), and shows progress.
import { esc, getJSON } from "./api.js";
import { t, uiLanguage } from "./i18n.js";

const MB = 1024 * 1024;

// The app's own files and the libraries its pages import, for the offline cache.
function appFiles(names) {
  const files = ["/", ...[...document.querySelectorAll("script[src], link[rel=stylesheet]")]
    .map((el) => new URL(el.src || el.href).pathname)];
  const map = document.querySelector('script[type="importmap"]');
  const imports = map ? Object.values(JSON.parse(map.textContent).imports) : [];
  const modules = names.map((f) => `/app/${f}`);
  const addons = imports.some((u) => u.includes("/three@"))
    ? ["examples/jsm/loaders/GLTFLoader.js", "examples/jsm/libs/meshopt_decoder.module.js",
      "examples/jsm/controls/OrbitControls.js", "examples/jsm/utils/BufferGeometryUtils.js",
      "examples/jsm/utils/SkeletonUtils.js",
      "build/three.core.js"]
      .map((f) => imports.find((u) => u.includes("/three@")).replace(/build\/three\.module\.js$/, f))
    : [];
  // The tour list the pages read first (in both forms the app asks for).
  const listings = ["/v1/tours", `/v1/tours?lang=${encodeURIComponent(uiLanguage())}`];
  return [...files, ...modules, ...imports.filter((u) => !u.endsWith("/")), ...addons,
    ...listings];
}

export async function mountDownload(container, tourId, lang) {
  if (!("serviceWorker" in navigator)) return;
  const pack = await getJSON(`/v1/tours/${encodeURIComponent(tourId)}/pack?lang=${encodeURIComponent(lang)}`);
  const size = (pack.total_bytes / MB).toFixed(1);
  container.innerHTML = `<div class="card stack">
    <p>${esc(t("offline.size", { mb: size, files: pack.count }))}</p>
    <button type="button" id="offline-download">${esc(t("offline.download"))}</button>
    <progress id="offline-progress" max="${pack.total_bytes}" value="0" hidden></progress>
    <p id="offline-status" role="status"></p></div>`;
  const button = container.querySelector("#offline-download");
  const bar = container.querySelector("#offline-progress");
  const status = container.querySelector("#offline-status");
  if (localStorage.getItem(`offline:${tourId}`) === lang) status.textContent = t("offline.ready");
  button.addEventListener("click", async () => {
    button.disabled = true;
    bar.hidden = false;
    const registration = await navigator.serviceWorker.register("/sw.js", { scope: "/" });
    await navigator.serviceWorker.ready;
    const worker = registration.active || navigator.serviceWorker.controller;
    navigator.serviceWorker.addEventListener("message", function onMessage(event) {
      const msg = event.data;
      if (msg?.tour !== tourId) return;
      if (msg.type === "progress") {
        bar.value = msg.done;
        status.textContent = t("offline.progress", { pct: Math.floor((100 * msg.done) / msg.total) });
      } else if (msg.type === "done") {
        bar.value = msg.total;
        localStorage.setItem(`offline:${tourId}`, lang);
        localStorage.setItem(`offline-tier:${tourId}`, pack.tier);
        status.textContent = t("offline.ready");
        button.disabled = false;
        navigator.serviceWorker.removeEventListener("message", onMessage);
      } else if (msg.type === "failed") {
        status.textContent = t("error", { message: msg.message });
        button.disabled = false;
        navigator.serviceWorker.removeEventListener("message", onMessage);
      }
    });
    const names = await getJSON("/app/files.json"); // every module, whatever the views import
    worker.postMessage({ type: "download", tour: tourId, lang, appFiles: appFiles(names) });
  });
}
