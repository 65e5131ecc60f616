// The host console at /host (issue 15). A host signs in with an API key, creates events,
// shares the join link, and runs the show over the live socket. Everything goes through the
// public API and the live protocol (docs/live-protocol.md), exactly as any other client would.
import qrcode from "qrcode-generator";
import { ApiError, esc, getJSON, postJSON } from "./api.js";
import { announce, pick, setupSettings, t, uiLanguage } from "./i18n.js";
import { LiveConnection } from "./live.js";

const main = document.getElementById("main");

// ---- what this browser keeps ------------------------------------------------------------
// The API key lives in sessionStorage: it is gone when the tab closes. The server shows an
// event's host token and invite code once, at creation, so those are kept per event in
// localStorage: the host token is the host's credential for the live socket.
const KEY_ITEM = "host.key";
const EVENTS_ITEM = "host.events";
// A host API key is tsk_ + 12 hex digits + _ + 43 URL-safe characters (store/keys.py).
const KEY_PATTERN = /^tsk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/;

const CUE_ACTIONS = ["lights", "scene", "narration", "stop", "end"];
const PATTERNS = ["steady", "pulse", "strobe", "chase", "off"];
const DEFAULT_LEAD_MS = 500;
const TIMELINE_START_MS = 1000; // a timeline starts this long after "Run"
// Refs name this tab's cues, so an echo or an error finds its control even when another
// console of the same host is sending too.
const TAB = Math.random().toString(16).slice(2, 6);

function savedEvents() {
  try {
    return JSON.parse(localStorage.getItem(EVENTS_ITEM)) || {};
  } catch {
    return {};
  }
}

function saveEvent(id, fields) {
  const all = savedEvents();
  all[id] = { ...all[id], ...fields };
  localStorage.setItem(EVENTS_ITEM, JSON.stringify(all));
}

// ---- small helpers ----------------------------------------------------------------------
const pad = (n) => String(Math.abs(Math.trunc(n))).padStart(2, "0");

// A datetime-local value ("2026-12-24T20:00") is the browser's local time; the API wants
// RFC 3339 with an offset, so attach the browser's offset for that date (DST included).
export function toRfc3339(local) {
  const d = new Date(local);
  if (!local || Number.isNaN(d.getTime())) return null;
  const off = -d.getTimezoneOffset();
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}`
    + `:${pad(d.getMinutes())}:${pad(d.getSeconds())}${off < 0 ? "-" : "+"}${pad(off / 60)}:${pad(off % 60)}`;
}

function localInputValue(d) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString(uiLanguage(), { dateStyle: "medium", timeStyle: "short" }) : "—";
}

function fmtMs(x) {
  return Math.abs(x) < 10 ? x.toFixed(1) : String(Math.round(x));
}

function errorText(err) {
  return err instanceof ApiError ? err.message : t("error", { message: err.message });
}

// Show a message in an element (hidden when empty).
function say(el, text) {
  if (!el) return;
  el.textContent = text || "";
  el.hidden = !text;
}

function options(items, selected) {
  return items.map(([value, label]) => `<option value="${esc(value)}"${
    value === selected ? " selected" : ""}>${esc(label)}</option>`).join("");
}

function field(id, label, control, extra = "") {
  return `<div class="field${extra}"><label for="${id}">${esc(label)}</label>${control}</div>`;
}

function sceneIds(tour) {
  return [...new Set(tour.stops.flatMap((s) => (s.scenes || []).map((c) => c.id)))];
}

function stopItems(tour) {
  return tour.stops.map((s) => [s.id, `${pick(s.title) || s.id} (${s.id})`]);
}

// The narration languages of one stop, with "each phone's own language" (no lang) first.
function langOptions(tour, stopId, selected = "") {
  const stop = tour.stops.find((s) => s.id === stopId);
  const langs = Object.keys(stop?.narration || {});
  return options([["", t("host.narration.anyLang")], ...langs.map((l) => [l, l])], selected);
}

// The parameter controls of one cue action. `p` prefixes the ids (several forms on a page);
// `v` holds values to show (a saved timeline row).
function paramsFields(action, tour, p, v = {}) {
  switch (action) {
    case "lights": {
      const intensity = v.intensity ?? 1;
      return field(`${p}-color`, t("host.lights.color"),
        `<input id="${p}-color" type="color" data-param="color" value="${esc(v.color || "#ff8800")}">`)
        + field(`${p}-intensity`, t("host.lights.intensity"), `<span class="row">
          <input id="${p}-intensity" type="range" min="0" max="1" step="0.05" data-param="intensity"
            value="${esc(intensity)}"><output for="${p}-intensity">${esc(intensity)}</output></span>`)
        + field(`${p}-pattern`, t("host.lights.pattern"), `<select id="${p}-pattern" data-param="pattern">${
          options(PATTERNS.map((x) => [x, t(`host.pattern.${x}`)]), v.pattern || "steady")}</select>`)
        + field(`${p}-period`, t("host.lights.period"), `<input id="${p}-period" type="number"
          min="50" max="60000" step="50" inputmode="numeric" data-param="period_ms"
          value="${esc(v.period_ms ?? "")}">`);
    }
    case "scene": {
      const ids = sceneIds(tour);
      if (!ids.length) return `<p class="muted">${esc(t("host.scene.none"))}</p>`;
      return field(`${p}-scene`, t("host.scene"), `<select id="${p}-scene" data-param="scene">${
        options(ids.map((id) => [id, id]), v.scene)}</select>`);
    }
    case "narration": {
      const stop = v.stop || tour.stops[0]?.id;
      return field(`${p}-nstop`, t("host.stop"), `<select id="${p}-nstop" data-param="stop"
          data-narration-stop="${p}-lang">${options(stopItems(tour), stop)}</select>`)
        + field(`${p}-lang`, t("host.narration.lang"), `<select id="${p}-lang" data-param="lang">${
          langOptions(tour, stop, v.lang)}</select>`);
    }
    case "stop":
      return field(`${p}-stop`, t("host.stop"), `<select id="${p}-stop" data-param="stop">${
        options(stopItems(tour), v.stop)}</select>`);
    default:
      return `<p class="muted">${esc(t("host.endCue.help"))}</p>`;
  }
}

// The params of a cue, read back from the controls paramsFields made.
function readParams(root) {
  const params = {};
  for (const el of root.querySelectorAll("[data-param]")) {
    const name = el.dataset.param;
    if (name === "intensity") params.intensity = Number(el.value);
    else if (name === "color") params.color = el.value.toLowerCase();
    else if (name === "period_ms" || name === "lang") {
      if (el.value !== "") params[name] = name === "lang" ? el.value : Number(el.value);
    } else params[name] = el.value;
  }
  return params;
}

// ---- views ------------------------------------------------------------------------------
class View {
  mount() { this.render(); }

  unmount() { this.gone = true; }

  // Replace main's content. Listeners go on the new root, so none pile up across renders.
  paint(html) {
    const root = document.createElement("div");
    root.className = "host-view stack";
    root.innerHTML = html;
    main.replaceChildren(root);
    this.root = root;
    return root;
  }

  $(selector) { return this.root?.querySelector(selector) ?? null; }
}

class SignIn extends View {
  render() {
    const root = this.paint(`
      <h1 tabindex="-1">${esc(t("host.signin"))}</h1>
      <form id="signin" class="host-panel stack" novalidate>
        <p>${esc(t("host.signin.intro"))}</p>
        ${field("api-key", t("host.key"), `<input id="api-key" name="key" type="password"
          autocomplete="off" spellcheck="false" required aria-describedby="api-key-help">`)}
        <p id="api-key-help" class="muted">${esc(t("host.key.help"))}</p>
        <p id="signin-error" class="error" role="alert" hidden></p>
        <div><button type="submit" class="primary">${esc(t("host.signin.button"))}</button></div>
      </form>`);
    root.querySelector("#signin").addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
  }

  async submit() {
    const input = this.$("#api-key");
    const out = this.$("#signin-error");
    const key = input.value.trim();
    const fail = (text) => {
      say(out, text);
      input.setAttribute("aria-invalid", "true");
      input.focus();
    };
    // The shape is checked here, so a mistyped or truncated key is caught at once.
    if (!KEY_PATTERN.test(key)) return fail(t("host.key.malformed"));
    // Then the server checks it: GET /v1/events with the key answers 401 for an unknown or
    // revoked key, 403 for a creator key, 503 if live events are unavailable.
    try {
      await getJSON("/v1/events", {
        headers: { Accept: "application/json", Authorization: `Bearer ${key}` },
      });
    } catch (err) {
      return fail(errorText(err));
    }
    sessionStorage.setItem(KEY_ITEM, key);
    route();
  }
}

class Dashboard extends View {
  constructor(key) {
    super();
    this.key = key;
    this.tours = null; // [{id, title}]
    this.docs = new Map(); // tour id -> tour document (stops)
    this.events = null;
    this.listError = "";
  }

  mount() {
    this.render();
    this.$("h1")?.focus();
    this.loadTours();
    this.loadEvents();
  }

  render() {
    const form = this.$("#create");
    const kept = form ? [...new FormData(form)] : null; // typed values survive a language switch
    const root = this.paint(`
      <div class="row spread"><h1 tabindex="-1">${esc(t("host.title"))}</h1>
        <button type="button" id="sign-out">${esc(t("host.signout"))}</button></div>
      <section class="host-panel" aria-labelledby="create-h">
        <h2 id="create-h">${esc(t("host.create"))}</h2>
        <form id="create" class="form-grid" novalidate>
          ${field("ev-title", t("host.ev.title"), `<input id="ev-title" name="title" required maxlength="200">`)}
          ${field("ev-tour", t("host.ev.tour"), `<select id="ev-tour" name="tour" required></select>`)}
          ${field("ev-stop", t("host.ev.stop"), `<select id="ev-stop" name="stop"></select>`)}
          ${field("ev-start", t("host.ev.start"), `<input id="ev-start" name="starts_at"
            type="datetime-local" required value="${localInputValue(new Date())}">`)}
          ${field("ev-end", t("host.ev.end"), `<input id="ev-end" name="ends_at" type="datetime-local">`)}
          ${field("ev-capacity", t("host.ev.capacity"), `<input id="ev-capacity" name="capacity"
            type="number" min="1" max="1000000" step="1" inputmode="numeric">`)}
          <fieldset class="field"><legend>${esc(t("host.ev.visibility"))}</legend>
            <label class="check"><input type="radio" name="visibility" value="public" checked>
              ${esc(t("host.ev.public"))}</label>
            <label class="check"><input type="radio" name="visibility" value="ticketed">
              ${esc(t("host.ev.ticketed"))}</label>
          </fieldset>
          <p id="create-error" class="error wide" role="alert" hidden></p>
          <div class="wide"><button type="submit" class="primary" id="create-submit">${
            esc(t("host.create.button"))}</button></div>
        </form>
      </section>
      <section class="host-panel" aria-labelledby="list-h">
        <div class="row spread"><h2 id="list-h">${esc(t("host.events"))}</h2>
          <button type="button" id="refresh">${esc(t("host.refresh"))}</button></div>
        <p class="muted">${esc(t("host.events.help"))}</p>
        <div id="event-list"></div>
      </section>`);
    this.fillTours();
    if (kept) {
      const f = this.$("#create");
      for (const [name, value] of kept) {
        if (name === "tour") continue; // already chosen by fillTours
        const el = f.elements[name];
        if (el) el.value = value;
      }
    }
    this.renderList();
    root.querySelector("#sign-out").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_ITEM);
      announce(t("host.signedOut"));
      route();
    });
    root.querySelector("#refresh").addEventListener("click", () => this.loadEvents());
    root.querySelector("#ev-tour").addEventListener("change", () => this.fillStops());
    root.querySelector("#create").addEventListener("submit", (e) => {
      e.preventDefault();
      this.create();
    });
  }

  async loadTours() {
    try {
      // Without ?lang= every title comes in every language: pick() chooses, and a tour
      // that lacks the interface language cannot turn the list into a 400.
      this.tours = (await getJSON("/v1/tours")).tours;
    } catch (err) {
      say(this.$("#create-error"), errorText(err));
      return;
    }
    if (!this.gone) this.fillTours();
  }

  fillTours() {
    const select = this.$("#ev-tour");
    if (!select || !this.tours) return;
    const chosen = select.value || this.chosenTour || this.tours[0]?.id;
    select.innerHTML = options(this.tours.map((x) => [x.id, `${pick(x.title)} (${x.id})`]), chosen);
    this.renderList(); // tour titles in the list
    this.fillStops();
  }

  async fillStops() {
    const tourId = this.$("#ev-tour")?.value;
    if (!tourId) return;
    this.chosenTour = tourId;
    if (!this.docs.has(tourId)) {
      try {
        this.docs.set(tourId, await getJSON(`/v1/tours/${encodeURIComponent(tourId)}`));
      } catch (err) {
        say(this.$("#create-error"), errorText(err));
        return;
      }
    }
    const select = this.$("#ev-stop");
    if (!select || this.$("#ev-tour").value !== tourId) return;
    const kept = select.value;
    select.innerHTML = options([["", t("host.ev.firstStop")], ...stopItems(this.docs.get(tourId))], kept);
  }

  async loadEvents() {
    try {
      this.events = (await getJSON("/v1/events")).events;
      this.listError = "";
    } catch (err) {
      this.listError = errorText(err);
    }
    if (!this.gone) this.renderList();
  }

  renderList() {
    const box = this.$("#event-list");
    if (!box) return;
    if (this.listError) {
      box.innerHTML = `<p class="error">${esc(this.listError)}</p>`;
      return;
    }
    if (!this.events) {
      box.innerHTML = `<p class="muted">${esc(t("loading"))}</p>`;
      return;
    }
    if (!this.events.length) {
      box.innerHTML = `<p class="muted">${esc(t("host.events.none"))}</p>`;
      return;
    }
    const mine = savedEvents();
    const titles = new Map((this.tours || []).map((x) => [x.id, pick(x.title)]));
    // Events made in this browser first (they can be run from here), newest first.
    const events = [...this.events].sort((a, b) => (Number(b.id in mine) - Number(a.id in mine))
      || b.starts_at.localeCompare(a.starts_at));
    box.innerHTML = `<div class="table-scroll"><table class="data">
      <caption class="visually-hidden">${esc(t("host.events"))}</caption>
      <thead><tr><th scope="col">${esc(t("host.ev.title"))}</th><th scope="col">${esc(t("host.ev.tour"))}</th>
        <th scope="col">${esc(t("host.ev.start"))}</th><th scope="col">${esc(t("host.ev.status"))}</th>
        <th scope="col">${esc(t("host.ev.visibility"))}</th><th scope="col">${esc(t("host.ev.here"))}</th></tr></thead>
      <tbody>${events.map((e) => `<tr data-event="${esc(e.id)}">
        <th scope="row"><a href="#/event/${encodeURIComponent(e.id)}">${esc(e.title)}</a></th>
        <td>${esc(titles.get(e.tour) || e.tour)}</td><td>${esc(when(e.starts_at))}</td>
        <td>${esc(t(`status.${e.status}`))}</td><td>${esc(t(`host.ev.${e.visibility}.short`))}</td>
        <td>${e.id in mine ? `<span class="badge">${esc(t("host.ev.mine"))}</span>` : ""}</td></tr>`).join("")}
      </tbody></table></div>`;
  }

  async create() {
    const form = this.$("#create");
    const out = this.$("#create-error");
    const data = Object.fromEntries(new FormData(form));
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    const invalid = (name, text) => {
      const el = form.elements[name];
      el.setAttribute("aria-invalid", "true");
      say(out, text);
      el.focus();
    };
    if (!data.title.trim()) return invalid("title", t("host.ev.titleMissing"));
    const body = { title: data.title.trim(), tour: data.tour, visibility: data.visibility,
      starts_at: toRfc3339(data.starts_at) };
    if (!body.starts_at) return invalid("starts_at", t("host.ev.startMissing"));
    if (data.stop) body.stop = data.stop;
    if (data.ends_at) body.ends_at = toRfc3339(data.ends_at);
    if (data.capacity) body.capacity = Number(data.capacity);
    const button = this.$("#create-submit");
    button.disabled = true;
    say(out, "");
    try {
      const created = await postJSON("/v1/events", body, { Authorization: `Bearer ${this.key}` });
      saveEvent(created.id, { host_token: created.host_token, invite_code: created.invite_code,
        title: created.title, tour: created.tour });
      announce(t("host.created", { title: created.title }));
      location.hash = `#/event/${encodeURIComponent(created.id)}`;
    } catch (err) {
      // 401/403 is the key: the server's own words, and what to do about it.
      const hint = err instanceof ApiError && (err.status === 401 || err.status === 403)
        ? ` ${t("host.key.refused")}` : "";
      say(out, errorText(err) + hint);
    } finally {
      button.disabled = false;
    }
  }
}

// One event: share it, run it live, end it, replay it.
class EventView extends View {
  constructor(id) {
    super();
    this.id = id;
    this.event = null;
    this.tour = null;
    this.creds = savedEvents()[id] || {};
    this.conn = null;
    this.connState = "idle"; // idle | connecting | connected | reconnecting | ended | closed
    this.phase = null; // from the welcome's state: scheduled | live | ended
    this.clock = null;
    this.present = null;
    this.show = null; // {stop, scene, lights}: what phones show now
    this.roster = null;
    this.muted = new Set();
    this.chat = []; // chat, moderation and end messages, oldest first
    this.statuses = {}; // status element id -> {key, vars, cls}
    this.latest = {}; // status element id -> the ref it reports on
    this.refs = new Map(); // ref -> {status} (fire now) or a timeline item
    this.sent = 0;
    this.timers = [];
    this.run = null; // the last timeline run: {items: [{ref, row, at, state, seq, message}]}
    this.rows = [];
    this.nextRow = 1;
  }

  async mount() {
    this.paint(`<p>${esc(t("loading"))}</p>`);
    try {
      this.event = await getJSON(`/v1/events/${encodeURIComponent(this.id)}`);
      this.tour = await getJSON(`/v1/tours/${encodeURIComponent(this.event.tour)}`);
    } catch (err) {
      this.paint(`<p><a href="#/">${esc(t("host.back"))}</a></p>
        <p class="error" role="alert">${esc(errorText(err))}</p>`);
      return;
    }
    if (this.gone) return;
    this.loadTimeline();
    this.render();
    this.$("h1")?.focus();
  }

  unmount() {
    super.unmount();
    this.conn?.close();
    this.conn = null;
    for (const id of this.timers) clearInterval(id);
    clearInterval(this.runTimer);
  }

  get ended() { return this.event?.status === "ended" || this.phase === "ended"; }

  render() {
    if (!this.event) return; // still loading (a language switch meanwhile)
    const e = this.event;
    const status = this.phase || e.status;
    const root = this.paint(`
      <p><a href="#/">${esc(t("host.back"))}</a></p>
      <h1 tabindex="-1">${esc(e.title)}</h1>
      <p class="meta">${esc(pick(this.tour.title))} · ${esc(when(e.starts_at))} ·
        <span id="event-status">${esc(t(`status.${status}`))}</span> ·
        ${esc(t(`host.ev.${e.visibility}.short`))}${e.capacity ? ` · ${esc(t("host.ev.capacityOf", { n: e.capacity }))}` : ""}</p>
      ${this.ended ? this.endedHtml() : ""}
      <div class="host-grid">
        ${this.shareHtml()}
        ${this.ended ? "" : this.creds.host_token ? this.liveHtml() : this.tokenHtml()}
      </div>
      ${!this.ended && this.creds.host_token ? `<div class="host-grid">
        <div class="stack">${this.fireHtml()}${this.timelineHtml()}</div>
        <div class="stack">${this.rosterHtml()}${this.chatHtml()}${this.endHtml()}</div></div>` : ""}`);
    this.drawQr();
    this.updateLive();
    this.renderRoster();
    this.renderChat();
    this.renderTimelineStatus();
    for (const id of Object.keys(this.statuses)) this.applyStatus(id);
    root.addEventListener("click", (ev) => this.onClick(ev));
    root.addEventListener("submit", (ev) => this.onSubmit(ev));
    root.addEventListener("input", (ev) => this.onInput(ev));
    root.addEventListener("change", (ev) => this.onChange(ev));
  }

  // ---- sharing ----
  joinUrl() { return new URL(this.event.join_url, location.origin).href; }

  shareHtml() {
    const ticketed = this.event.visibility === "ticketed";
    const invite = this.creds.invite_code;
    return `<section class="host-panel stack" aria-labelledby="share-h">
      <h2 id="share-h">${esc(t("host.share"))}</h2>
      <div class="field"><label for="join-url">${esc(t("host.join"))}</label>
        <div class="row"><input id="join-url" class="join-url" readonly value="${esc(this.joinUrl())}">
          <button type="button" data-copy="join-url">${esc(t("host.copy"))}</button></div></div>
      <img id="join-qr" class="qr" alt="${esc(t("host.qr", { url: this.joinUrl() }))}">
      ${ticketed ? (invite ? `<div class="field"><label for="invite-code">${esc(t("host.invite"))}</label>
        <div class="row"><input id="invite-code" class="invite" readonly value="${esc(invite)}">
          <button type="button" data-copy="invite-code">${esc(t("host.copyInvite"))}</button></div>
        <p class="muted">${esc(t("host.invite.help"))}</p></div>`
        : `<p class="muted">${esc(t("host.invite.missing"))}</p>`) : ""}
      <p id="copy-status" class="muted" role="status"></p>
    </section>`;
  }

  drawQr() {
    const img = this.$("#join-qr");
    if (!img) return;
    // qrcode-generator: type 0 picks the smallest version that fits; M corrects ~15 %.
    const qr = qrcode(0, "M");
    qr.addData(this.joinUrl());
    qr.make();
    img.src = qr.createDataURL(4, 16); // 4 px modules, a 4-module quiet zone; a GIF data: URL
  }

  async copy(id) {
    const input = this.$(`#${id}`);
    const out = this.$("#copy-status");
    try {
      await navigator.clipboard.writeText(input.value);
      say(out, t("host.copied"));
    } catch {
      // No clipboard permission (an embedded page, an old browser): select it instead.
      input.focus();
      input.select();
      say(out, t("host.copyManual"));
    }
  }

  // ---- ended ----
  endedHtml() {
    // The log of a ticketed event needs a ticket; the host token is one.
    const logUrl = this.event.log_url + (this.event.visibility === "ticketed" && this.creds.host_token
      ? `?ticket=${encodeURIComponent(this.creds.host_token)}` : "");
    return `<section class="host-panel stack" aria-labelledby="ended-h">
      <h2 id="ended-h" tabindex="-1">${esc(t("live.ended"))}</h2>
      ${this.event.ended_at ? `<p>${esc(t("host.endedAt", { time: when(this.event.ended_at) }))}</p>` : ""}
      <p class="row"><a id="replay" class="button" href="${esc(this.event.join_url)}" target="_blank"
        rel="noopener">${esc(t("host.replay"))}</a>
        <a id="log-link" class="button" href="${esc(logUrl)}" rel="noreferrer">${esc(t("host.log"))}</a></p>
      <p class="muted">${esc(t("host.replay.help"))}</p>
    </section>`;
  }

  // ---- an event made elsewhere: the host token can be pasted ----
  tokenHtml() {
    return `<section class="host-panel stack" aria-labelledby="token-h">
      <h2 id="token-h">${esc(t("host.token"))}</h2>
      <p>${esc(t("host.token.help"))}</p>
      <form id="token-form" class="stack">
        ${field("host-token", t("host.token"), `<input id="host-token" type="password" autocomplete="off"
          spellcheck="false" required>`)}
        <div><button type="submit">${esc(t("host.token.use"))}</button></div>
      </form></section>`;
  }

  // ---- the live connection ----
  liveHtml() {
    return `<section class="host-panel stack" aria-labelledby="live-h">
      <h2 id="live-h">${esc(t("host.live"))}</h2>
      <p id="conn-state" role="status"></p>
      <dl class="facts">
        <dt>${esc(t("host.clock"))}</dt><dd id="clock">—</dd>
        <dt>${esc(t("host.present"))}</dt><dd id="present">—</dd>
        <dt>${esc(t("host.showState"))}</dt><dd id="show-state">—</dd>
      </dl>
      <div class="row"><button type="button" id="connect" class="primary">${esc(t("host.connect"))}</button>
        <button type="button" id="disconnect">${esc(t("host.disconnect"))}</button></div>
      <p id="live-error" class="error" hidden></p>
    </section>`;
  }

  live() { return this.connState === "connected" && this.conn?.ws?.readyState === WebSocket.OPEN; }

  connect() {
    if (this.conn) return;
    const conn = new LiveConnection(this.id, this.creds.host_token);
    this.conn = conn;
    this.connState = "connecting";
    const on = (type, fn) => conn.addEventListener(type, (ev) => { if (this.conn === conn) fn(ev.detail); });
    on("welcome", (msg) => this.onWelcome(msg));
    on("clock", (sample) => {
      this.clock = sample;
      this.updateLive();
    });
    on("presence", (msg) => {
      this.present = msg.count;
      this.updateLive();
    });
    on("roster", (msg) => {
      this.roster = msg;
      this.present = msg.count;
      for (const a of msg.attendees) this.muted[a.muted ? "add" : "delete"](a.id);
      this.renderRoster();
      this.updateLive();
    });
    on("cue", (msg) => this.onCue(msg));
    on("chat", (msg) => this.addLog(msg));
    on("moderate", (msg) => {
      if (msg.action === "mute") this.muted.add(msg.target);
      if (msg.action === "unmute") this.muted.delete(msg.target);
      this.addLog(msg);
      this.refreshModeration();
      announce(t(`host.moderated.${msg.action}`, { who: this.who(msg.target) }));
    });
    on("end", (msg) => {
      this.addLog(msg);
      this.phase = "ended";
    });
    on("error", (msg) => this.onError(msg));
    on("close", ({ code }) => this.onClose(code));
    conn.connect();
    this.updateLive();
    // Clocks drift: sync again now and then during a long show.
    this.timers.push(setInterval(() => { if (this.live()) conn.syncClock(); }, 5 * 60 * 1000));
  }

  disconnect() {
    this.conn?.close();
    this.conn = null;
    for (const id of this.timers) clearInterval(id);
    this.timers = [];
    this.connState = "closed";
    this.roster = null;
    clearInterval(this.runTimer); // echoes no longer arrive: the last states stay as shown
    this.renderRoster();
    this.updateLive();
  }

  onWelcome(msg) {
    if (msg.role !== "host") {
      // A pasted ticket that is not the host token: nothing here would work with it.
      this.showLiveError(t("host.notHost"));
      this.disconnect();
      return;
    }
    this.connState = "connected";
    this.phase = msg.state.phase;
    this.present = msg.state.counts.present;
    this.muted = new Set(msg.state.muted);
    const { stop, scene, lights } = msg.state;
    this.show = { stop, scene, lights: { ...lights } };
    for (const cue of msg.state.scheduled) this.conn.at(cue.at, () => this.applyShow(cue));
    if (msg.mode === "replay" || this.phase === "ended") {
      this.finish();
      return;
    }
    this.showLiveError("");
    this.updateLive();
    this.refreshModeration();
  }

  onClose(code) {
    if (code === 4002) {
      this.finish();
      return;
    }
    if (this.conn?.closed) return;
    this.connState = [1008, 1009, 4001].includes(code) ? "closed" : "reconnecting";
    if (this.connState === "closed") {
      this.showLiveError(t("host.closedCode", { code }));
      this.conn = null;
    }
    this.updateLive();
  }

  // The event is over: read it again (ended_at) and show replay and log.
  async finish() {
    this.conn?.close();
    this.conn = null;
    this.connState = "ended";
    this.phase = "ended";
    clearInterval(this.runTimer);
    try {
      this.event = await getJSON(`/v1/events/${encodeURIComponent(this.id)}`);
    } catch {
      // keep what we have: the socket already said it ended
    }
    if (this.gone) return;
    announce(t("live.ended"));
    this.render();
    this.$("#ended-h")?.focus();
  }

  showLiveError(text) { say(this.$("#live-error"), text); }

  updateLive() {
    const state = this.$("#conn-state");
    if (!state) return;
    const key = { idle: "host.notConnected", closed: "host.notConnected", connecting: "live.connecting",
      connected: "live.connected", reconnecting: "live.reconnecting", ended: "live.ended" }[this.connState];
    state.textContent = t(key);
    state.className = this.connState === "connected" ? "ok" : "";
    this.$("#clock").textContent = this.clock && this.connState === "connected"
      ? t("live.clock", { ms: fmtMs(Math.max(0, this.clock.delay) / 2) }) : "—";
    this.$("#present").textContent = this.present == null ? "—" : t("present", { n: this.present });
    const s = this.show;
    this.$("#show-state").textContent = s ? t("host.showNow", { stop: s.stop ?? "—", scene: s.scene ?? "—",
      color: s.lights.color, pattern: t(`host.pattern.${s.lights.pattern}`) }) : "—";
    this.$("#connect").disabled = Boolean(this.conn);
    this.$("#disconnect").disabled = !this.conn;
  }

  // What phones show, as cues play (for the host's own overview).
  applyShow(cue) {
    if (!this.show) return;
    const p = cue.params || {};
    if (cue.action === "lights") Object.assign(this.show.lights, p);
    else if (cue.action === "scene") this.show.scene = p.scene;
    else if (cue.action === "stop") Object.assign(this.show, { stop: p.stop, scene: p.scene ?? null });
    this.updateLive();
  }

  // ---- cues ----
  ref(kind) { return `${TAB}-${kind}${++this.sent}`; }

  lead() {
    const value = Number(this.$("#lead")?.value);
    return Number.isFinite(value) && value >= 0 && value <= 60000 ? value : null;
  }

  fireHtml() {
    return `<section class="host-panel stack" aria-labelledby="fire-h">
      <h2 id="fire-h">${esc(t("host.fire"))}</h2>
      ${field("lead", t("host.lead"), `<input id="lead" type="number" min="0" max="60000" step="50"
        inputmode="numeric" value="${esc(this.leadMs ?? DEFAULT_LEAD_MS)}" aria-describedby="lead-help">`)}
      <p id="lead-help" class="muted">${esc(t("host.lead.help"))}</p>
      ${CUE_ACTIONS.map((action) => `<form class="cue-form" data-cue="${action}" aria-labelledby="now-${action}-h">
        <h3 id="now-${action}-h">${esc(t(`host.action.${action}`))}</h3>
        <div class="row params">${paramsFields(action, this.tour, `now-${action}`)}</div>
        <div class="row"><button type="submit" id="fire-${action}"${action === "end" ? ' class="danger"' : ""}>${
          esc(t(`host.fire.${action}`))}</button>
          <span class="confirm" id="confirm-${action}" hidden></span>
          <span id="now-${action}-status" class="cue-status"></span></div>
      </form>`).join("")}
    </section>`;
  }

  fire(action, form) {
    const status = `now-${action}-status`;
    if (!this.live()) return this.setStatus(status, "host.connectFirst", {}, "error", true);
    const lead = this.lead();
    if (lead === null) return this.setStatus(status, "host.lead.invalid", {}, "error", true);
    const ref = this.ref("n");
    this.refs.set(ref, { status });
    this.latest[status] = ref;
    this.conn.send({ type: "cue", at: this.conn.serverNow() + lead, action, params: readParams(form), ref });
    this.setStatus(status, "host.cue.sent");
  }

  setStatus(id, key, vars = {}, cls = "", loud = false) {
    this.statuses[id] = { key, vars, cls };
    this.applyStatus(id);
    if (loud) announce(t(key, vars));
  }

  applyStatus(id) {
    const el = this.$(`#${id}`);
    const s = this.statuses[id];
    if (!el || !s) return;
    el.textContent = t(s.key, s.vars);
    el.className = `${el.id.startsWith("tl-") ? "tl-status" : "cue-status"} ${s.cls}`;
  }

  onCue(msg) {
    if (this.show) this.conn.at(msg.at, () => this.applyShow(msg));
    const mine = this.refs.get(msg.ref);
    if (!mine) return;
    if (mine.row !== undefined) {
      Object.assign(mine, { state: "stored", seq: msg.seq });
      this.renderTimelineStatus();
      return;
    }
    const { status } = mine;
    if (this.latest[status] !== msg.ref) return; // a newer cue of this control reports now
    this.setStatus(status, "host.cue.stored", { seq: msg.seq });
    this.conn.at(msg.at, () => {
      if (this.latest[status] === msg.ref) this.setStatus(status, "host.cue.played", { seq: msg.seq }, "played");
    });
  }

  onError(msg) {
    const text = t("host.refused", { message: msg.message || msg.code });
    const mine = msg.ref !== undefined ? this.refs.get(msg.ref) : null;
    if (mine?.row !== undefined) {
      Object.assign(mine, { state: "error", message: msg.message || msg.code });
      this.renderTimelineStatus();
      announce(t("host.tl.refused", { n: mine.index + 1, message: mine.message }));
    } else if (mine) {
      this.setStatus(mine.status, "host.refused", { message: msg.message || msg.code }, "error", true);
    } else {
      this.showLiveError(text);
      announce(text);
    }
  }

  // ---- the timeline ----
  timelineItem() { return `host.timeline.${this.event.tour}`; }

  // Timelines are kept per tour in this browser, so a show can be run again at another event.
  loadTimeline() {
    try {
      const rows = JSON.parse(localStorage.getItem(this.timelineItem())) || [];
      this.rows = rows.map((r) => ({ id: this.nextRow++, offset: Number(r.offset) || 0,
        action: CUE_ACTIONS.includes(r.action) ? r.action : "lights", params: r.params || {} }));
    } catch {
      this.rows = [];
    }
  }

  saveTimeline() {
    localStorage.setItem(this.timelineItem(), JSON.stringify(
      this.rows.map(({ offset, action, params }) => ({ offset, action, params }))));
  }

  timelineHtml() {
    return `<section class="host-panel stack" aria-labelledby="tl-h">
      <h2 id="tl-h">${esc(t("host.tl"))}</h2>
      <p class="muted">${esc(t("host.tl.help"))}</p>
      <ol id="timeline" class="timeline">${this.rows.map((row, i) => this.rowHtml(row, i)).join("")}</ol>
      <div class="row"><button type="button" id="tl-add">${esc(t("host.tl.add"))}</button>
        <button type="button" id="tl-run" class="primary">${esc(t("host.tl.run"))}</button></div>
      <p id="tl-summary" role="status"></p>
    </section>`;
  }

  rowHtml(row, i) {
    const p = `tl-${row.id}`;
    return `<li class="tl-row" data-row="${row.id}"><fieldset>
      <legend>${esc(t("host.tl.cue", { n: i + 1 }))}</legend>
      <div class="row">
        ${field(`${p}-offset`, t("host.tl.offset"), `<input id="${p}-offset" class="tl-offset" type="number"
          min="0" step="100" inputmode="numeric" value="${esc(row.offset)}">`)}
        ${field(`${p}-action`, t("host.tl.action"), `<select id="${p}-action" class="tl-action">${
          options(CUE_ACTIONS.map((a) => [a, t(`host.action.${a}`)]), row.action)}</select>`)}
        <button type="button" class="tl-remove" aria-label="${esc(t("host.tl.removeN", { n: i + 1 }))}">${
          esc(t("host.tl.remove"))}</button>
      </div>
      <div class="row params tl-params">${paramsFields(row.action, this.tour, p, row.params)}</div>
      <p id="${p}-status" class="tl-status"></p>
    </fieldset></li>`;
  }

  // The rows as the form shows them now.
  readTimeline() {
    for (const li of this.root.querySelectorAll(".tl-row")) {
      const row = this.rows.find((r) => r.id === Number(li.dataset.row));
      if (!row) continue;
      row.offset = li.querySelector(".tl-offset").value === "" ? NaN : Number(li.querySelector(".tl-offset").value);
      row.action = li.querySelector(".tl-action").value;
      row.params = readParams(li.querySelector(".tl-params"));
    }
    this.saveTimeline();
  }

  redrawTimeline(focusSelector) {
    const list = this.$("#timeline");
    list.innerHTML = this.rows.map((row, i) => this.rowHtml(row, i)).join("");
    this.renderTimelineStatus();
    if (focusSelector) this.$(focusSelector)?.focus();
  }

  runTimeline() {
    this.readTimeline();
    const summary = this.$("#tl-summary");
    if (!this.live()) {
      say(summary, t("host.connectFirst"));
      announce(t("host.connectFirst"));
      return;
    }
    if (!this.rows.length) return say(summary, t("host.tl.empty"));
    const bad = this.rows.findIndex((r) => !Number.isFinite(r.offset) || r.offset < 0);
    if (bad >= 0) {
      say(summary, t("host.tl.badOffset", { n: bad + 1 }));
      this.$(`#tl-${this.rows[bad].id}-offset`)?.focus();
      return;
    }
    // Every cue goes now, each at start + offset: the server schedules them and they are
    // durable from then on (a host's burst allowance covers hundreds of cues).
    const start = this.conn.serverNow() + TIMELINE_START_MS;
    const items = this.rows.map((row, index) => ({ ref: this.ref("t"), row: row.id, index,
      at: start + row.offset, state: "sent", seq: null, message: "" }));
    this.run = { items };
    items.forEach((item, i) => {
      this.refs.set(item.ref, item);
      const row = this.rows[i];
      this.conn.send({ type: "cue", at: item.at, action: row.action, params: row.params, ref: item.ref });
    });
    announce(t("host.tl.sent", { n: items.length }));
    this.renderTimelineStatus();
    clearInterval(this.runTimer);
    this.runTimer = setInterval(() => this.renderTimelineStatus(), 100);
  }

  // Each row's state, and a count; a cue has played once the server clock passes its `at`.
  renderTimelineStatus() {
    if (!this.run) return;
    const now = this.conn ? this.conn.serverNow() : Date.now();
    let played = 0;
    let failed = 0;
    let pending = 0;
    for (const item of this.run.items) {
      let key;
      let cls = "";
      if (item.state === "error") {
        key = "host.tl.state.error";
        cls = "error";
        failed++;
      } else if (item.state === "stored" && item.at <= now) {
        key = "host.tl.state.played";
        cls = "played";
        played++;
      } else {
        key = item.state === "stored" ? "host.tl.state.stored" : "host.tl.state.sent";
        pending++;
      }
      const el = this.$(`#tl-${item.row}-status`);
      const text = t(key, { seq: item.seq, s: ((item.at - now) / 1000).toFixed(1), message: item.message });
      if (el && el.textContent !== text) {
        el.textContent = text;
        el.className = `tl-status ${cls}`;
      }
    }
    const summary = this.$("#tl-summary");
    // Polite status: say only the counts, and only when they change.
    const text = t("host.tl.summary", { played, total: this.run.items.length, failed });
    if (summary && summary.textContent !== text) say(summary, text);
    if (!pending) clearInterval(this.runTimer);
  }

  // ---- the attendees ----
  rosterHtml() {
    return `<section class="host-panel stack" aria-labelledby="roster-h">
      <h2 id="roster-h">${esc(t("host.roster"))}</h2>
      <p class="muted">${esc(t("host.roster.help"))}</p>
      <div class="table-scroll"><table class="data" id="roster">
        <caption class="visually-hidden">${esc(t("host.roster"))}</caption>
        <thead><tr><th scope="col">${esc(t("host.r.name"))}</th><th scope="col">${esc(t("host.r.id"))}</th>
          <th scope="col">${esc(t("host.r.role"))}</th><th scope="col">${esc(t("host.r.delay"))}</th>
          <th scope="col">${esc(t("host.r.chat"))}</th><th scope="col">${esc(t("host.r.actions"))}</th></tr></thead>
        <tbody id="roster-body"></tbody></table></div>
      <p id="roster-empty" class="muted"></p>
    </section>`;
  }

  who(id) {
    const a = this.roster?.attendees.find((x) => x.id === id);
    const c = this.chat.find((m) => m.from === id && m.name);
    return a?.name || c?.name || id;
  }

  moderationButtons(id, role, who) {
    const mute = role === "attendee" // viewers cannot chat: nothing to mute
      ? `<button type="button" class="small mute-toggle" data-target="${esc(id)}" data-who="${esc(who)}"></button> ` : "";
    return `${mute}<button type="button" class="small danger" data-moderate="kick" data-target="${esc(id)}"
      aria-label="${esc(t("host.kickWho", { who }))}">${esc(t("host.kick"))}</button>`;
  }

  // Rows are updated in place, keyed by socket: the roster comes every second, and a rebuilt
  // table would take the keyboard focus off the button the host is on.
  renderRoster() {
    const body = this.$("#roster-body");
    if (!body) return;
    const list = this.roster?.attendees || [];
    const keep = new Set();
    for (const a of list) {
      const key = a.conn || a.id;
      keep.add(key);
      const who = a.name || a.id;
      let tr = [...body.children].find((row) => row.dataset.conn === key);
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.conn = key;
        tr.dataset.id = a.id;
        tr.dataset.role = a.role;
        tr.innerHTML = `<th scope="row"></th><td><code>${esc(a.id)}</code></td><td class="r-role"></td>
          <td class="r-delay"></td><td class="r-chat"></td><td class="r-actions">${
            this.moderationButtons(a.id, a.role, who)}</td>`;
        body.append(tr);
      }
      const cells = tr.children;
      const set = (el, text) => { if (el.textContent !== text) el.textContent = text; };
      set(cells[0], who);
      cells[0].classList.toggle("muted", !a.name);
      set(cells[2], t(`host.role.${a.role}`));
      set(cells[3], a.delay_ms == null ? t("host.r.notSynced") : t("host.r.ms", { ms: fmtMs(a.delay_ms) }));
      if (a.role !== "attendee") set(cells[4], "—");
    }
    for (const tr of [...body.children]) if (!keep.has(tr.dataset.conn)) tr.remove();
    this.refreshModeration();
    const empty = this.$("#roster-empty");
    const text = !this.roster ? t("host.roster.connect") : !list.length ? t("host.roster.none")
      : this.roster.truncated ? t("host.roster.truncated", { shown: list.length, n: this.roster.count }) : "";
    say(empty, text);
  }

  // Every Mute/Unmute button on the page, after a change of who is muted.
  refreshModeration() {
    for (const b of this.root?.querySelectorAll(".mute-toggle") || []) {
      const muted = this.muted.has(b.dataset.target);
      b.dataset.moderate = muted ? "unmute" : "mute";
      const text = t(muted ? "host.unmute" : "host.mute");
      if (b.textContent !== text) b.textContent = text;
      b.setAttribute("aria-label", t(muted ? "host.unmuteWho" : "host.muteWho", { who: b.dataset.who }));
      b.setAttribute("aria-pressed", String(muted));
    }
    for (const tr of this.root?.querySelectorAll("#roster-body tr[data-role=attendee]") || []) {
      const text = this.muted.has(tr.dataset.id) ? t("host.r.muted") : t("host.r.canChat");
      const cell = tr.querySelector(".r-chat");
      if (cell.textContent !== text) cell.textContent = text;
    }
  }

  moderate(action, target) {
    if (!this.live()) {
      this.showLiveError(t("host.connectFirst"));
      announce(t("host.connectFirst"));
      return;
    }
    this.conn.send({ type: "moderate", action, target });
  }

  // ---- chat ----
  chatHtml() {
    return `<section class="host-panel stack" aria-labelledby="chat-h">
      <h2 id="chat-h">${esc(t("host.chat"))}</h2>
      <ol id="chat-log" class="chat-log" role="log" aria-labelledby="chat-h"></ol>
      <form id="chat-form" class="row">
        ${field("chat-text", t("host.chat.message"), `<input id="chat-text" maxlength="500" autocomplete="off">`, " grow")}
        <div><button type="submit">${esc(t("host.chat.send"))}</button></div>
      </form></section>`;
  }

  addLog(msg) {
    if (typeof msg.seq === "number" && this.chat.some((m) => m.seq === msg.seq)) return; // a resume
    this.chat.push(msg);
    if (this.chat.length > 300) this.chat.shift();
    const list = this.$("#chat-log");
    if (!list) return;
    list.insertAdjacentHTML("beforeend", this.logHtml(msg));
    while (list.children.length > 300) list.firstElementChild.remove();
    this.refreshModeration();
    list.scrollTop = list.scrollHeight;
  }

  logHtml(msg) {
    const time = new Date(msg.ts).toLocaleTimeString(uiLanguage());
    if (msg.type === "chat") {
      const who = msg.name || msg.from;
      return `<li data-seq="${msg.seq}"><span class="meta">${esc(time)}</span>
        <strong>${esc(who)}</strong> <code>${esc(msg.from)}</code>: <span class="chat-text">${esc(msg.text)}</span>
        ${msg.role === "attendee" ? `<span class="row inline">${this.moderationButtons(msg.from, "attendee", who)}</span>` : ""}</li>`;
    }
    const text = msg.type === "end" ? t("live.ended")
      : t(`host.moderated.${msg.action}`, { who: this.who(msg.target) });
    return `<li data-seq="${msg.seq}" class="notice"><span class="meta">${esc(time)}</span> <em>${esc(text)}</em></li>`;
  }

  renderChat() {
    const list = this.$("#chat-log");
    if (!list) return;
    list.innerHTML = this.chat.map((m) => this.logHtml(m)).join("");
    this.refreshModeration();
  }

  // ---- ending ----
  endHtml() {
    return `<section class="host-panel stack" aria-labelledby="end-h">
      <h2 id="end-h">${esc(t("host.end"))}</h2>
      <p class="muted">${esc(t("host.end.help"))}</p>
      <div class="row"><button type="button" id="end-event" class="danger">${esc(t("host.end.button"))}</button>
        <span class="confirm" id="confirm-event" hidden></span></div>
      <p id="end-error" class="error" role="alert" hidden></p>
    </section>`;
  }

  // An inline "are you sure": the question and two buttons beside the control, focus on
  // Cancel, so neither Enter nor a stray click ends a show.
  confirm(slot, question, onYes) {
    const box = this.$(`#${slot}`);
    box.innerHTML = `<span>${esc(question)}</span>
      <button type="button" class="danger" data-confirm="yes">${esc(t("host.confirm.yes"))}</button>
      <button type="button" data-confirm="no">${esc(t("host.confirm.no"))}</button>`;
    box.hidden = false;
    box.setAttribute("role", "group");
    box.setAttribute("aria-label", question);
    this.onConfirm = { slot, onYes };
    box.querySelector('[data-confirm="no"]').focus();
    announce(question);
  }

  async endEvent() {
    // POST /v1/events/{id}/end with the host token: it answers whether or not a socket is
    // open, and everyone connected gets `end` and close 4002.
    const out = this.$("#end-error");
    say(out, "");
    try {
      this.event = await postJSON(`/v1/events/${encodeURIComponent(this.id)}/end`, {},
        { Authorization: `Bearer ${this.creds.host_token}` });
    } catch (err) {
      say(out, errorText(err));
      return;
    }
    this.finish();
  }

  // ---- events on the page ----
  onClick(ev) {
    const b = ev.target.closest("button");
    if (!b) return;
    if (b.dataset.copy) this.copy(b.dataset.copy);
    else if (b.id === "connect") this.connect();
    else if (b.id === "disconnect") this.disconnect();
    else if (b.dataset.moderate) this.moderate(b.dataset.moderate, b.dataset.target);
    else if (b.id === "end-event") this.confirm("confirm-event", t("host.end.confirm", { title: this.event.title }),
      () => this.endEvent());
    else if (b.dataset.confirm) {
      const { slot, onYes } = this.onConfirm || {};
      const box = slot && this.$(`#${slot}`);
      if (box) {
        box.hidden = true;
        box.innerHTML = "";
      }
      this.onConfirm = null;
      if (b.dataset.confirm === "yes") onYes?.();
      else this.$(slot === "confirm-event" ? "#end-event" : "#fire-end")?.focus();
    } else if (b.id === "tl-add") {
      this.readTimeline();
      const last = this.rows.at(-1);
      this.rows.push({ id: this.nextRow++, offset: last ? last.offset + 1000 : 0, action: "lights", params: {} });
      this.saveTimeline();
      this.redrawTimeline(`#tl-${this.rows.at(-1).id}-offset`);
    } else if (b.classList.contains("tl-remove")) {
      this.readTimeline();
      const id = Number(b.closest(".tl-row").dataset.row);
      this.rows = this.rows.filter((r) => r.id !== id);
      this.saveTimeline();
      this.redrawTimeline("#tl-add");
    } else if (b.id === "tl-run") this.runTimeline();
  }

  onSubmit(ev) {
    ev.preventDefault();
    const form = ev.target;
    if (form.dataset.cue === "end") {
      this.confirm("confirm-end", t("host.endCue.confirm"), () => this.fire("end", form));
    } else if (form.dataset.cue) this.fire(form.dataset.cue, form);
    else if (form.id === "chat-form") {
      const input = this.$("#chat-text");
      if (!input.value.trim()) return;
      if (!this.live()) return this.showLiveError(t("host.connectFirst"));
      this.conn.send({ type: "chat", text: input.value });
      input.value = "";
    } else if (form.id === "token-form") {
      const token = this.$("#host-token").value.trim();
      if (!token) return;
      this.creds = { ...this.creds, host_token: token };
      saveEvent(this.id, { host_token: token, title: this.event.title, tour: this.event.tour });
      this.render();
    }
  }

  onInput(ev) {
    const el = ev.target;
    if (el.id === "lead") this.leadMs = el.value; // kept across a language switch
    if (el.type === "range") {
      const out = el.parentElement.querySelector("output");
      if (out) out.value = el.value;
    }
    if (el.closest(".tl-row")) this.readTimeline();
  }

  onChange(ev) {
    const el = ev.target;
    if (el.dataset.narrationStop) {
      // A stop's own narration languages.
      const lang = this.$(`#${el.dataset.narrationStop}`);
      if (lang) lang.innerHTML = langOptions(this.tour, el.value);
    }
    if (el.classList.contains("tl-action")) {
      this.readTimeline();
      const row = this.rows.find((r) => r.id === Number(el.closest(".tl-row").dataset.row));
      row.params = {};
      el.closest(".tl-row").querySelector(".tl-params").innerHTML = paramsFields(row.action, this.tour, `tl-${row.id}`);
      this.readTimeline();
    } else if (el.closest(".tl-row")) this.readTimeline();
  }
}

// ---- the router: #/ is the dashboard (or sign-in), #/event/ID one event ------------------
let view = null;

function route() {
  view?.unmount();
  const m = location.hash.match(/^#\/event\/([^/?#]+)$/);
  const key = sessionStorage.getItem(KEY_ITEM);
  view = m ? new EventView(decodeURIComponent(m[1])) : key ? new Dashboard(key) : new SignIn();
  view.mount();
}

setupSettings(() => view?.render?.());
window.addEventListener("hashchange", route);
route();
