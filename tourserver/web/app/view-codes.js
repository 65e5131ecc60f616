// Printable QR codes of a tour's stops, for creators to put up at each stop: a tourist who
// gives no location permission scans one with the phone's camera and lands on the stop.
import qrcode from "qrcode-generator";
import { esc } from "./api.js";
import { pick, t, uiLanguage } from "./i18n.js";
import { loadTour } from "./view-tour.js";

export async function mount(main, tourId) {
  const lang = uiLanguage();
  const tour = await loadTour(tourId, lang);
  main.innerHTML = `<p class="no-print"><a href="#/tour/${encodeURIComponent(tour.id)}">${esc(t("back"))}</a></p>
    <h1>${esc(t("codes.title", { tour: pick(tour.title, lang) }))}</h1>
    <p class="no-print">${esc(t("codes.help"))}</p>
    <ol class="codes"></ol>`;
  const list = main.querySelector(".codes");
  for (const stop of tour.stops) {
    const url = `${location.origin}/#/stop/${encodeURIComponent(tour.id)}/${encodeURIComponent(stop.id)}`;
    const qr = qrcode(0, "M"); // the smallest version that fits; M corrects about 15 %
    qr.addData(url);
    qr.make();
    const item = document.createElement("li");
    item.className = "code card";
    const img = document.createElement("img");
    img.src = qr.createDataURL(6, 16);
    img.alt = t("codes.alt", { stop: pick(stop.title, lang) });
    img.dataset.url = url;
    const name = document.createElement("h2");
    name.textContent = pick(stop.title, lang);
    const link = document.createElement("p");
    link.className = "meta";
    link.textContent = url;
    item.append(name, img, link);
    list.append(item);
  }
}
