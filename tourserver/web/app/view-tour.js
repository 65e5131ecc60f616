// One tour: its summary, estimated length and walking time, the stops in order, a route map
// drawn locally (no map tiles, nothing leaves the server), when the city lights are on, and
// the live events planned on it.
import { esc, getJSON } from "./api.js";
import { mountDownload } from "./offline.js";
import { pick, t, uiLanguage } from "./i18n.js";
import { distanceM } from "./geofence.js";

const SVG = "http://www.w3.org/2000/svg";
const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const WEEK = 7 * 1440; // minutes

// Does a tour offering `offered` languages answer `?lang=want`? The server's lookup is
// BCP-47: "zh-Hans" finds "zh" and "zh" finds "zh-Hans".
function offers(offered, want) {
  const w = want.toLowerCase();
  return (offered || []).some((o) => {
    const l = o.toLowerCase();
    return l === w || w.startsWith(`${l}-`) || l.startsWith(`${w}-`);
  });
}

// The tour document in `lang` if the tour offers it, else in every language (no `lang`).
// The list of tours says which languages a tour has: asking for one it lacks would be a
// 400, which the browser logs as an error. The list is kept for a few minutes.
const listing = { promise: null, at: 0 };
export async function loadTour(tourId, lang = uiLanguage()) {
  if (!listing.promise || Date.now() - listing.at > 300000) {
    listing.at = Date.now();
    listing.promise = getJSON("/v1/tours").catch((err) => { listing.promise = null; throw err; });
  }
  const { tours } = await listing.promise;
  const entry = tours.find((x) => x.id === tourId);
  const base = `/v1/tours/${encodeURIComponent(tourId)}`;
  return getJSON(entry && offers(entry.languages, lang) ? `${base}?lang=${encodeURIComponent(lang)}` : base);
}

// The route's lines of [lon, lat] points (GeoJSON LineString, or MultiLineString).
function routeLines(tour) {
  const route = tour.route;
  if (route?.type === "LineString") return [route.coordinates];
  if (route?.type === "MultiLineString") return route.coordinates;
  return [];
}

// These are estimates, not promises: the route's length as drawn (straight segments between
// its points), walked at 4.5 km/h, plus 10 minutes at each stop, rounded to 5 minutes.
export function estimates(tour) {
  let metres = 0;
  for (const line of routeLines(tour)) {
    for (let i = 1; i < line.length; i++) metres += distanceM(line[i - 1][1], line[i - 1][0], line[i][1], line[i][0]);
  }
  const km = metres / 1000;
  const minutes = Math.round(((km / 4.5) * 60 + 10 * (tour.stops?.length || 0)) / 5) * 5;
  return { km, minutes };
}

function stopPosition(stop) {
  const p = stop.anchor?.geopose?.position;
  return p ? [p.lon, p.lat] : null;
}

// The route as an inline SVG: an equirectangular projection around the route's centre,
// longitudes scaled by cos(latitude) so that a city-sized map keeps its shape.
function routeSvg(tour) {
  const lines = routeLines(tour);
  const stops = tour.stops.map(stopPosition);
  const points = [...lines.flat(), ...stops.filter(Boolean)];
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "route");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", t("route"));
  if (!points.length) return svg;
  const lons = points.map((p) => p[0]);
  const lats = points.map((p) => p[1]);
  const lon0 = (Math.min(...lons) + Math.max(...lons)) / 2;
  const lat0 = (Math.min(...lats) + Math.max(...lats)) / 2;
  const k = Math.cos((lat0 * Math.PI) / 180);
  const project = ([lon, lat]) => [(lon - lon0) * k, lat0 - lat]; // y grows southwards
  const xy = points.map(project);
  const spanX = Math.max(...xy.map((p) => p[0])) - Math.min(...xy.map((p) => p[0]));
  const spanY = Math.max(...xy.map((p) => p[1])) - Math.min(...xy.map((p) => p[1]));
  // A 400-unit-wide drawing whose height follows the route's shape, from 2:1 landscape to
  // a little taller than square, so that a north-south route does not fill a phone's screen.
  const width = 400;
  const height = Math.round(Math.min(440, Math.max(200, (width * spanY) / (spanX || spanY || 1))));
  const pad = 28;
  const scale = Math.min((width - 2 * pad) / (spanX || 1e-9), (height - 2 * pad) / (spanY || 1e-9));
  const toSvg = (p) => {
    const [x, y] = project(p);
    return [width / 2 + x * scale, height / 2 + y * scale].map((v) => v.toFixed(1));
  };
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const title = document.createElementNS(SVG, "title");
  title.textContent = t("route");
  svg.append(title);
  for (const line of lines.filter((l) => l.length > 1)) {
    const path = document.createElementNS(SVG, "polyline");
    path.setAttribute("class", "route-line");
    path.setAttribute("points", line.map((p) => toSvg(p).join(",")).join(" "));
    svg.append(path);
  }
  tour.stops.forEach((stop, i) => {
    if (!stops[i]) return;
    const [x, y] = toSvg(stops[i]);
    // Not links: the map is one image to assistive technology (role="img"), and the
    // numbered list of stops beside it holds the links.
    const marker = document.createElementNS(SVG, "g");
    marker.setAttribute("class", "marker");
    marker.dataset.stop = stop.id;
    const dot = document.createElementNS(SVG, "circle");
    dot.setAttribute("cx", x);
    dot.setAttribute("cy", y);
    dot.setAttribute("r", "13");
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", x);
    label.setAttribute("y", y);
    label.setAttribute("text-anchor", "middle");
    label.setAttribute("dominant-baseline", "central");
    label.textContent = String(i + 1);
    marker.append(dot, label);
    svg.append(marker);
  });
  return svg;
}

function stopHref(tourId, stopId) {
  return `#/stop/${encodeURIComponent(tourId)}/${encodeURIComponent(stopId)}`;
}

const minutesOf = (hhmm) => {
  const [h, m] = hhmm.split(":").map(Number);
  return h * 60 + m;
};

// Now in the tour's time zone, as a weekday (0 = Monday) and minutes after midnight.
export function zonedNow(timeZone, now = new Date()) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-US", {
    timeZone, weekday: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  }).formatToParts(now).map((p) => [p.type, p.value]));
  return { day: DAYS.indexOf(parts.weekday.toLowerCase()), minutes: (Number(parts.hour) % 24) * 60 + Number(parts.minute) };
}

// Whether the lights are on now, else when they next come on. A window starts on each of its
// days; an end earlier than the start runs past midnight, and an end equal to the start
// means all day. Everything is in minutes of the tour's local week, Monday 00:00 = 0.
export function lightsStatus(windows, timeZone, now = new Date()) {
  if (!windows?.length) return null;
  const local = zonedNow(timeZone, now);
  const at = local.day * 1440 + local.minutes;
  let next = null;
  for (const w of windows) {
    const start = minutesOf(w.start);
    const length = (minutesOf(w.end) - start + 1440) % 1440 || 1440;
    for (const day of w.days) {
      const begin = DAYS.indexOf(day) * 1440 + start;
      const since = (at - begin + WEEK) % WEEK; // minutes since this window last began
      if (since < length) return { lit: true };
      const wait = WEEK - since; // minutes until it begins again
      if (!next || wait < next.wait) next = { wait, start: w.start, day: DAYS.indexOf(day) };
    }
  }
  const today = next.day === local.day && local.minutes + next.wait < 1440;
  return { lit: false, time: next.start, day: today ? null : next.day };
}

// A weekday's name in the interface language (1 January 2024 was a Monday).
function weekdayName(day) {
  return new Intl.DateTimeFormat(uiLanguage(), { weekday: "long", timeZone: "UTC" })
    .format(new Date(Date.UTC(2024, 0, 1 + day)));
}

function lightsLine(tour) {
  const status = lightsStatus(tour.lights_on, tour.timezone);
  if (!status) return t("lit.none");
  if (status.lit) return t("lit.now");
  const time = status.day === null ? status.time : `${weekdayName(status.day)} ${status.time}`;
  return t("lit.at", { time });
}

function languageName(tag) {
  try {
    return new Intl.DisplayNames([uiLanguage()], { type: "language" }).of(tag) || tag;
  } catch {
    return tag;
  }
}

function eventItems(events, timeZone) {
  if (!events.length) return `<p class="muted">${esc(t("events.none"))}</p>`;
  // In the tour's time zone (where the event happens), saying which zone that is.
  const when = new Intl.DateTimeFormat(uiLanguage(), {
    timeZone, weekday: "short", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    timeZoneName: "short",
  });
  return `<ul class="events">${events.map((ev) => `
    <li class="card event" data-event="${esc(ev.id)}">
      <h3>${esc(ev.title)}</h3>
      <p class="meta"><time datetime="${esc(ev.starts_at)}">${esc(when.format(new Date(ev.starts_at)))}</time>
        · ${esc(t(`status.${ev.status}`))}</p>
      <a class="button primary" href="#/event/${encodeURIComponent(ev.id)}">${esc(t("join"))}
        <span class="visually-hidden">${esc(ev.title)}</span></a>
    </li>`).join("")}</ul>`;
}

export async function mount(main, tourId) {
  const lang = uiLanguage();
  const tour = await loadTour(tourId, lang);
  const { km, minutes } = estimates(tour);
  main.innerHTML = `
    <p><a href="#/">${esc(t("back"))}</a></p>
    <h1>${esc(pick(tour.title, lang))}</h1>
    <p>${esc(pick(tour.summary, lang))}</p>
    <p class="meta" id="tour-languages">${esc((tour.languages || []).map(languageName).join(" · "))}</p>
    <p class="meta"><span id="tour-distance" data-km="${km.toFixed(1)}">${esc(t("distance", { km: km.toFixed(1) }))}</span>
      · <span id="tour-duration" data-min="${minutes}">${esc(t("duration", { min: minutes }))}</span>
      <span class="visually-hidden">${esc(t("estimate"))}</span></p>
    <p id="tour-lights" class="lights"></p>
    <div class="tour-layout">
      <section aria-labelledby="stops-h"><h2 id="stops-h">${esc(t("stops"))}</h2>
        <ol class="stops">${tour.stops.map((stop) => `
          <li><a href="${stopHref(tour.id, stop.id)}">${esc(pick(stop.title, lang))}</a></li>`).join("")}</ol>
      </section>
      <section id="tour-route" aria-labelledby="route-h"><h2 id="route-h">${esc(t("route"))}</h2></section>
      <p><a id="tour-codes" href="#/tour/${encodeURIComponent(tour.id)}/codes">${esc(t("codes.link"))}</a></p>
    </div>
    <section id="tour-events" aria-labelledby="events-h"><h2 id="events-h">${esc(t("events"))}</h2>
      <p class="muted">${esc(t("loading"))}</p></section>
    <section aria-labelledby="offline-h"><h2 id="offline-h">${esc(t("offline.title"))}</h2>
      <div id="tour-offline"></div></section>`;
  main.querySelector("#tour-route").append(routeSvg(tour));
  mountDownload(main.querySelector("#tour-offline"), tour.id, tour.language || tour.default_language)
    .catch((err) => {
      main.querySelector("#tour-offline").textContent = t("error", { message: err.message });
    });

  const lights = main.querySelector("#tour-lights");
  const showLights = () => {
    lights.textContent = `${lightsLine(tour)} (${tour.timezone})`;
  };
  showLights();
  const timer = setInterval(showLights, 60000); // the line stays true while the page is open

  const events = main.querySelector("#tour-events");
  if (tour.links?.events) {
    try {
      const body = await getJSON(tour.links.events);
      events.querySelector("p").outerHTML = eventItems(body.events || [], tour.timezone);
    } catch (err) {
      events.querySelector("p").outerHTML = `<p class="error">${esc(t("error", { message: err.message }))}</p>`;
    }
  } else {
    events.querySelector("p").outerHTML = eventItems([], tour.timezone);
  }
  if (!lights.isConnected) { clearInterval(timer); return null; } // another view opened meanwhile
  return () => clearInterval(timer);
}
