// The list of tours.
import { esc, getJSON } from "./api.js";
import { t, uiLanguage } from "./i18n.js";

export async function mount(main) {
  const lang = uiLanguage();
  // Titles in the interface language where every tour offers it, else each tour's own.
  const { tours } = await getJSON(`/v1/tours?lang=${encodeURIComponent(lang)}`)
    .catch(() => getJSON("/v1/tours"));
  // Localized texts are {lang: text}: the interface language, else the first given.
  const pick = (m) => (typeof m === "string" ? m
    : m?.[lang] ?? m?.[lang.split("-")[0]] ?? Object.values(m || {})[0] ?? "");
  main.innerHTML = `<h1>${esc(t("tours"))}</h1><ul class="cards">${tours.map((tour) => `
    <li class="card"><a href="#/tour/${encodeURIComponent(tour.id)}">
      <h2>${esc(pick(tour.title))}</h2>
      <p>${esc(pick(tour.summary))}</p>
      <p class="meta">${esc((tour.languages || []).join(" · "))}</p></a></li>`).join("")}</ul>`;
}
