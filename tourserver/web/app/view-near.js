// Stops near me, without telling the server where I am: the H3 cell (resolution 8, about
// 0.7 km²) is computed here, only the cell is asked for, and geofencing runs on the phone.
import { latLngToCell } from "h3-js";
import { esc, getJSON } from "./api.js";
import { Geofence } from "./geofence.js";
import { announce, pick, t, uiLanguage } from "./i18n.js";

const RESOLUTION = 8;

export async function mount(main) {
  main.innerHTML = `<h1>${esc(t("near.title"))}</h1>
    <p>${esc(t("near.privacy"))}</p>
    <p><button type="button" class="primary" id="near-start">${esc(t("near.start"))}</button></p>
    <p id="near-status" role="status"></p>
    <div id="near-here"></div>
    <ul id="near-list" class="cards"></ul>
    <p class="muted">${esc(t("near.manual"))} <a href="#/">${esc(t("tours"))}</a></p>`;
  const status = main.querySelector("#near-status");
  const here = main.querySelector("#near-here");
  const list = main.querySelector("#near-list");
  const fence = new Geofence();
  const cells = new Set();
  let watch = null;
  const lang = uiLanguage();
  const title = (texts) => pick(texts, lang);

  const render = () => {
    list.innerHTML = fence.nearest().map(({ stop, distance, inside }) => `
      <li class="card"><a href="#/stop/${encodeURIComponent(stop.tour)}/${encodeURIComponent(stop.id)}">
        <h2>${esc(title(stop.title))}</h2>
        <p class="meta">${distance == null ? "" : esc(t("near.distance", { m: Math.round(distance) }))}
        ${inside ? ` · <strong>${esc(t("near.inside"))}</strong>` : ""}</p></a></li>`).join("");
  };

  let last = null;
  const evaluate = () => {
    if (!last) return;
    for (const change of fence.update(last.latitude, last.longitude)) {
      if (change.type === "enter") {
        const name = title(change.stop.title);
        here.innerHTML = `<p class="card"><a class="primary" id="near-open"
          href="#/stop/${encodeURIComponent(change.stop.tour)}/${encodeURIComponent(change.stop.id)}">
          ${esc(t("near.arrived", { stop: name }))}</a></p>`;
        announce(t("near.arrived", { stop: name }));
      } else if (here.querySelector("#near-open")?.getAttribute("href")
        ?.endsWith(`/${encodeURIComponent(change.stop.id)}`)) {
        here.innerHTML = "";
      }
    }
    render();
  };

  const onFix = async (position) => {
    const { latitude, longitude, accuracy } = position.coords;
    const cell = latLngToCell(latitude, longitude, RESOLUTION);
    if (!cells.has(cell)) {
      cells.add(cell);
      const doc = await getJSON(`/v1/cells/${cell}`); // the only request: a coarse cell
      fence.add(doc.stops);
    }
    status.textContent = t("near.accuracy", { m: Math.round(accuracy) });
    last = { latitude, longitude }; // kept on this device only
    evaluate();
  };

  main.querySelector("#near-start").addEventListener("click", () => {
    if (!navigator.geolocation) {
      status.textContent = t("near.unavailable");
      return;
    }
    status.textContent = t("near.asking");
    watch = navigator.geolocation.watchPosition(
      (p) => onFix(p).catch((e) => { status.textContent = t("error", { message: e.message }); }),
      () => { status.textContent = t("near.denied"); },
      { enableHighAccuracy: true, maximumAge: 5000, timeout: 30000 });
  });
  // Dwell is time spent inside: re-check the last fix every second even if it is unchanged.
  const ticker = setInterval(evaluate, 1000);
  return () => {
    clearInterval(ticker);
    if (watch !== null) navigator.geolocation.clearWatch(watch);
  };
}
