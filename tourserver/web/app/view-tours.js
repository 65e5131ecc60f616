// The list of tours.
import { esc, getJSON } from "./api.js";
import { pick, t, uiLanguage } from "./i18n.js";

export async function mount(main) {
  const lang = uiLanguage();
  // Titles in the interface language where every tour offers it, else each tour's own.
  const { tours } = await getJSON(`/v1/tours?lang=${encodeURIComponent(lang)}`)
    .catch(() => getJSON("/v1/tours"));
  main.innerHTML = `<h1>${esc(t("tours"))}</h1><ul class="cards">${tours.map((tour) => `
    <li class="card"><a href="#/tour/${encodeURIComponent(tour.id)}">
      <h2>${esc(pick(tour.title))}</h2>
      <p>${esc(pick(tour.summary))}</p>
      <p class="meta">${esc((tour.languages || []).join(" · "))}</p></a></li>`).join("")}</ul>`;
}
