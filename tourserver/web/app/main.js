// The tourist app: a small hash router over views, each in its own module.
import { applyStrings, setupSettings, t } from "./i18n.js";
import { esc } from "./api.js";

const VIEWS = [
  [/^#?\/?$/, () => import("./view-tours.js")],
  [/^#\/tour\/([^/]+)$/, () => import("./view-tour.js")],
  [/^#\/tour\/([^/]+)\/codes$/, () => import("./view-codes.js")],
  [/^#\/stop\/([^/]+)\/([^/]+)$/, () => import("./view-stop.js")],
  [/^#\/event\/([^/]+)$/, () => import("./view-event.js")],
  [/^#\/near$/, () => import("./view-near.js")],
];

let current = null; // the mounted view's cleanup

async function route() {
  const main = document.getElementById("main");
  if (current) { current(); current = null; }
  const hash = location.hash || "#/";
  for (const [pattern, load] of VIEWS) {
    const m = hash.match(pattern);
    if (!m) continue;
    try {
      const view = await load();
      main.innerHTML = "";
      current = (await view.mount(main, ...m.slice(1).map(decodeURIComponent))) || null;
    } catch (err) {
      main.innerHTML = `<p class="error" role="alert">${esc(t("error", { message: err.message }))}</p>`;
    }
    applyStrings(main);
    return;
  }
  location.hash = "#/";
}

// A join link (/?event=ID) opens the event's view.
const joining = new URLSearchParams(location.search).get("event");
if (joining) history.replaceState(null, "", `/#/event/${encodeURIComponent(joining)}`);

setupSettings(route);
window.addEventListener("hashchange", route);
route();
