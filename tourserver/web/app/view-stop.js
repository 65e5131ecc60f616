// One stop of a tour: its 3D scene (with a low-data mode, a 360° view for remote visitors
// and AR where the device really offers it), and its narration with captions.
import { ApiError, esc, getJSON } from "./api.js";
import { pick as pickText, t, uiLanguage } from "./i18n.js";
import { mountNarration } from "./narration.js";
import { startGeoAR } from "./geoar.js";
import { mountScene } from "./scene.js";

function lowDataSetting() {
  try { return localStorage.getItem("lowData") === "1"; } catch { return false; }
}

export async function mount(main, tourId, stopId) {
  const ui = uiLanguage();
  const pick = (texts) => pickText(texts, ui);
  const tourUrl = `/v1/tours/${encodeURIComponent(tourId)}`;
  // The tour in the interface language if it offers it (400 names the ones it does), else
  // the whole document in every language.
  let tour;
  try {
    tour = await getJSON(`${tourUrl}?lang=${encodeURIComponent(ui)}`);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 400)) throw err;
    tour = await getJSON(tourUrl);
  }
  const stop = (tour.stops || []).find((s) => s.id === stopId);
  if (!stop) throw new Error(t("stop.missing", { stop: stopId }));
  const sceneRef = stop.scenes?.[0];

  main.innerHTML = `
    <p><a class="back" href="#/tour/${encodeURIComponent(tour.id)}">${esc(t("stop.back"))}</a></p>
    <h1>${esc(pick(stop.title))}</h1>
    ${stop.summary ? `<p class="muted">${esc(pick(stop.summary))}</p>` : ""}
    <section class="stop-scene stack" aria-label="${esc(t("scene.section"))}">
      ${sceneRef ? `
      <div class="scene-box"><p class="scene-status" role="status">${esc(t("scene.loading"))}</p></div>
      <div class="row scene-tools">
        <label class="check"><input type="checkbox" class="low-data"> <span>${esc(t("scene.lowData"))}</span></label>
        <button type="button" class="view-360" aria-pressed="false">${esc(t("scene.view360"))}</button>
        <button type="button" class="view-ar">${esc(t("ar.view"))}</button>
      </div>
      <p class="scene-info muted"></p>
      <p class="ar-note" role="status" hidden>${esc(t("ar.unavailable"))}</p>
      <div class="ar-overlay" hidden><button type="button" class="ar-exit primary">${esc(t("ar.exit"))}</button></div>`
      : `<p class="scene-none muted">${esc(t("scene.none"))}</p>`}
    </section>
    <div class="narration-slot"></div>`;

  let scene = null;
  let sceneLoad = null; // aborts a scene still downloading
  let gone = false;
  let xrSupported = false;
  let stopGeo = null; // ends the location-and-compass placement

  const box = main.querySelector(".scene-box");
  const status = main.querySelector(".scene-status");
  const info = main.querySelector(".scene-info");
  const lowData = main.querySelector(".low-data");
  const view360 = main.querySelector(".view-360");
  const viewAR = main.querySelector(".view-ar");
  const arNote = main.querySelector(".ar-note");
  const arOverlay = main.querySelector(".ar-overlay");

  async function showScene() {
    stopGeo?.();
    stopGeo = null;
    if (viewAR) viewAR.textContent = t("ar.view");
    sceneLoad?.abort();
    scene?.dispose();
    scene = null;
    const load = sceneLoad = new AbortController();
    status.hidden = false;
    status.className = "scene-status";
    status.textContent = t("scene.loading");
    info.textContent = "";
    try {
      // A downloaded tour plays its downloaded tier (it is what works without a signal),
      // unless the tourist asked for low data.
      const offlineTier = localStorage.getItem("lowData") === "1" ? undefined
        : localStorage.getItem(`offline-tier:${tourId}`) || undefined;
      const mounted = await mountScene(box, sceneRef.id, { signal: load.signal, tier: offlineTier });
      if (gone || load.signal.aborted) { mounted.dispose(); return; }
      scene = mounted;
      scene.canvas.setAttribute("aria-label", t("scene.label", { title: pick(sceneRef.title) }));
      scene.setAutoRotate(view360.getAttribute("aria-pressed") === "true");
      status.hidden = true;
      const nf = new Intl.NumberFormat(ui, { maximumFractionDigits: 1 });
      info.textContent = t("scene.info", { tier: t(`tier.${scene.tier}`),
        size: t("size.mb", { mb: nf.format((scene.variant.bytes || 0) / 1e6) }),
        triangles: nf.format(scene.variant.triangles || 0) });
    } catch (err) {
      if (gone || load.signal.aborted) return;
      status.className = "scene-status error";
      status.textContent = t("scene.error", { message: err.message });
    }
  }

  if (sceneRef) {
    // The browser's data saver decides for us; otherwise the visitor's own setting does.
    const saveData = navigator.connection?.saveData === true;
    lowData.checked = saveData || lowDataSetting();
    lowData.disabled = saveData;
    if (saveData) lowData.title = t("scene.saveData");
    lowData.addEventListener("change", () => {
      try { localStorage.setItem("lowData", lowData.checked ? "1" : "0"); } catch { /* private mode */ }
      showScene();
    });

    view360.addEventListener("click", () => {
      const on = view360.getAttribute("aria-pressed") !== "true";
      view360.setAttribute("aria-pressed", String(on));
      scene?.setAutoRotate(on);
    });

    // AR only where the browser says it can do an immersive-ar session; asked up front so
    // the click can start the session while it still counts as a user gesture.
    Promise.resolve(navigator.xr?.isSessionSupported?.("immersive-ar"))
      .then((yes) => { xrSupported = yes === true; }, () => { xrSupported = false; });
    viewAR.addEventListener("click", async () => {
      if (!scene) return;
      if (!xrSupported) {
        // No WebXR: place the scene by location and compass instead, and say how well.
        if (stopGeo) {
          stopGeo();
          stopGeo = null;
          viewAR.textContent = t("ar.view");
          arNote.hidden = true;
          return;
        }
        const geopose = sceneRef.anchor?.geopose ?? stop.anchor?.geopose;
        if (!geopose) return;
        viewAR.textContent = t("ar.exit");
        stopGeo = await startGeoAR(box, scene, geopose, (key, vars) => {
          arNote.textContent = `${t(key, vars)} ${t("geoar.note")}`;
          arNote.hidden = false;
        });
        return;
      }
      try {
        arOverlay.hidden = false;
        const session = await scene.enterAR({ overlay: arOverlay });
        session.addEventListener("end", () => { arOverlay.hidden = true; });
      } catch (err) {
        arOverlay.hidden = true;
        arNote.textContent = t("ar.failed", { message: err.message });
        arNote.hidden = false;
      }
    });
    main.querySelector(".ar-exit").addEventListener("click", () => {
      scene?.renderer.xr.getSession()?.end();
    });

    showScene();
  }

  // Narration in the interface language, else the tour's default, else whatever there is.
  let narration = null;
  const slot = main.querySelector(".narration-slot");
  if (stop.narration && Object.keys(stop.narration).length) {
    const languages = tour.languages?.length ? tour.languages : Object.keys(stop.narration);
    const first = stop.narration[ui] ? ui
      : languages.includes(tour.default_language) ? tour.default_language : languages[0];
    const heading = document.createElement("h2");
    heading.textContent = t("narration");
    slot.append(heading);
    narration = mountNarration(slot, stop, first, {
      languages,
      // A document fetched for one language holds only that narration: get another's.
      onLanguage: async (code) => {
        if (stop.narration[code]) return stop.narration[code];
        const other = await getJSON(`${tourUrl}?lang=${encodeURIComponent(code)}`);
        const same = (other.stops || []).find((s) => s.id === stop.id);
        const found = same?.narration?.[code] ?? Object.values(same?.narration || {})[0];
        if (found) stop.narration[code] = found;
        return found;
      },
    });
    if (!stop.narration[first]) narration.setLanguage(first);
  } else {
    slot.innerHTML = `<p class="muted">${esc(t("narration.none"))}</p>`;
  }

  return () => {
    gone = true;
    stopGeo?.();
    sceneLoad?.abort();
    scene?.dispose(); // ends an AR session too
    narration?.dispose();
  };
}
