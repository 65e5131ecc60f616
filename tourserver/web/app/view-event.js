// A live event, as an attendee: the connection and its clock, who is here, reactions, the
// current stop, and a "light stage" that plays the host's cues at the same instant on every
// phone (docs/live-protocol.md). Cues are scheduled on the server clock with conn.at().
//
// Each cue is applied once per browser, by seq: the ticket, the last seq received (for
// from_seq) and the seqs already applied are kept in localStorage under the event's id, so
// a reloaded or reopened tab resumes where it left off instead of starting over.
import { esc, getJSON, postJSON } from "./api.js";
import { announce, pick, t, uiLanguage } from "./i18n.js";
import { LiveConnection } from "./live.js";
import { mountScene } from "./scene.js";
import { loadTour } from "./view-tour.js";

// The reactions the server accepts (tourserver/live/protocol.py REACTIONS): compared
// exactly, so "❤️" keeps its U+FE0F.
const REACTIONS = ["👏", "❤️", "🎆", "😮", "😂", "👍", "🔥", "✨"];
const PATTERNS = ["steady", "pulse", "strobe", "chase", "off"];
const KEEP_APPLIED = 500; // seqs remembered per event: far more than can be pending at once
const LATE_NARRATION_MS = 5000; // narration cues later than this are shown but not played
const MIN_STROBE_MS = 400;

// --- What this browser remembers about an event -------------------------------------------

const storageKey = (eventId) => `live:${eventId}`;

function loadSaved(eventId) {
  try {
    return JSON.parse(localStorage.getItem(storageKey(eventId))) || {};
  } catch {
    return {};
  }
}

// Merge into what is stored (another tab of the same event may have written meanwhile).
function save(eventId, { ticket, expiresAt, seq, applied }) {
  const saved = loadSaved(eventId);
  const merged = new Set([...(saved.applied || []), ...(applied || [])]);
  const record = {
    ticket: ticket ?? saved.ticket,
    expires_at: expiresAt ?? saved.expires_at,
    seq: Math.max(seq ?? -1, saved.seq ?? -1),
    applied: [...merged].sort((a, b) => a - b).slice(-KEEP_APPLIED),
    last: applied?.length ? applied[applied.length - 1] : saved.last,
  };
  if (record.seq < 0) delete record.seq;
  try {
    localStorage.setItem(storageKey(eventId), JSON.stringify(record));
  } catch {
    // Private mode or a full quota: the event still works, only without resuming.
  }
}

// Forget events whose ticket expired more than a day ago, so that records do not pile up.
function pruneSaved() {
  try {
    for (const key of Object.keys(localStorage)) {
      if (!key.startsWith("live:")) continue;
      const expires = Date.parse(JSON.parse(localStorage.getItem(key))?.expires_at);
      if (Date.now() - expires > 86400000) localStorage.removeItem(key);
    }
  } catch {
    // Storage unavailable or a record not ours: nothing to prune.
  }
}

async function newTicket(eventId) {
  const body = await postJSON(`/v1/events/${encodeURIComponent(eventId)}/tickets`, {});
  save(eventId, { ticket: body.ticket, expiresAt: body.expires_at });
  return body;
}

// The stored ticket while it has more than a minute left, else a new one.
async function ticketFor(eventId) {
  const saved = loadSaved(eventId);
  if (saved.ticket && Date.parse(saved.expires_at) - Date.now() > 60000) return saved.ticket;
  return (await newTicket(eventId)).ticket;
}

// --- The view ------------------------------------------------------------------------------

export async function mount(main, eventId) {
  const event = await getJSON(`/v1/events/${encodeURIComponent(eventId)}`);
  const lang = uiLanguage();
  main.innerHTML = `
    <h1 id="event-title">${esc(event.title)}</h1>
    <p class="meta"><span id="event-status">${esc(t(`status.${event.status}`))}</span>
      · <a id="event-tour" href="#/tour/${encodeURIComponent(event.tour)}">${esc(event.tour)}</a></p>
    <p class="row live-status"><span id="live-state" role="status">${esc(t("live.connecting"))}</span>
      <span id="live-clock" class="muted"></span>
      <span id="presence" class="muted" data-count=""></span></p>
    <p id="current-stop"></p>
    <div id="stage" class="stage" role="img" data-applied-seq="" data-color="">
      <span id="stage-scene" class="stage-scene"></span>
    </div>
    <div id="event-scene" class="event-scene"></div>
    <p id="narration" class="row" aria-live="polite"></p>
    <section aria-labelledby="react-h"><h2 id="react-h">${esc(t("react"))}</h2>
      <div class="row reactions" id="react-buttons">${REACTIONS.map((e) => `
        <button type="button" class="react" data-emoji="${esc(e)}">${esc(e)}</button>`).join("")}</div>
      <p id="reactions" class="reaction-counts" aria-live="off"></p>
    </section>`;

  const $ = (sel) => main.querySelector(sel);
  const stage = $("#stage");
  const stateEl = $("#live-state");
  const timers = new Set(); // every pending timeout, cleared on unmount
  const later = (ms, fn) => {
    const id = setTimeout(() => { timers.delete(id); fn(); }, ms);
    timers.add(id);
    return id;
  };
  let audio = null;
  let ended = false;
  let connection = null; // the LiveConnection, once a ticket is in hand

  // Cues applied in this page, for tests; the stored list also covers earlier pages.
  window.__appliedSeqs = [];
  pruneSaved();
  const saved = loadSaved(eventId);
  const applied = new Set(saved.applied || []);
  if (saved.last != null) stage.dataset.appliedSeq = String(saved.last);

  const setState = (key) => {
    stateEl.textContent = t(key);
    stateEl.dataset.state = key.replace("live.", "");
  };

  if (event.ended_at || event.status === "ended") {
    setState("live.ended");
    return () => {};
  }

  // --- The tour, for stop titles and narration audio --------------------------------------
  const tours = new Map(); // language -> tour document (promise)
  const tourIn = (language) => {
    if (!tours.has(language)) tours.set(language, loadTour(event.tour, language).catch(() => null));
    return tours.get(language);
  };
  tourIn(lang).then((tour) => {
    if (tour) $("#event-tour").textContent = pick(tour.title, lang);
  });

  // --- Applying state and cues -------------------------------------------------------------
  let lights = { color: "#ffffff", intensity: 1, pattern: "steady" };
  function showLights(next) {
    lights = { ...lights, ...next };
    stage.dataset.color = lights.color;
    stage.dataset.pattern = lights.pattern;
    stage.dataset.intensity = String(lights.intensity);
    // CSSOM properties, not a style attribute: the page's CSP allows these.
    stage.style.setProperty("--stage-color", lights.color);
    stage.style.setProperty("--stage-intensity", String(lights.intensity));
    // A strobe flashes at most 2.5 times a second, whatever the host asks: faster
    // full-screen flashing can trigger seizures (WCAG 2.3.1 sets the line at 3).
    const period = lights.period_ms ?? 1000;
    const safe = lights.pattern === "strobe" ? Math.max(period, MIN_STROBE_MS) : period;
    stage.style.setProperty("--stage-period", `${safe}ms`);
    for (const p of PATTERNS) stage.classList.toggle(`stage--${p}`, lights.pattern === p);
    stage.setAttribute("aria-label", `${t("stage")}: ${t("cue.lights", { color: lights.color })}`);
    view3d?.setLights(lights);
  }

  // The event's 3D scene: the one the host shows, lit as the cues say, on the shared clock.
  let view3d = null;
  let view3dId = null;
  async function mount3d(sceneId) {
    if (sceneId === view3dId) return;
    view3dId = sceneId;
    view3d?.dispose();
    view3d = null;
    const box = $("#event-scene");
    if (!sceneId || !box) return;
    try {
      const mounted = await mountScene(box, sceneId, { now: () => connection?.serverNow() ?? Date.now() });
      if (ended || view3dId !== sceneId) { mounted.dispose(); return; }
      view3d = mounted;
      view3d.canvas.dataset.scene = sceneId;
      view3d.canvas.setAttribute("aria-label", t("scene", { scene: sceneId }));
      view3d.setLights(lights);
    } catch (err) {
      box.textContent = t("error", { message: err.message });
    }
  }

  function showScene(scene) {
    $("#stage-scene").textContent = scene ? t("scene", { scene }) : "";
    stage.dataset.scene = scene || "";
    mount3d(scene || null);
  }

  function showStop(stopId) {
    const el = $("#current-stop");
    if (!stopId) { el.textContent = ""; return; }
    const href = `#/stop/${encodeURIComponent(event.tour)}/${encodeURIComponent(stopId)}`;
    el.innerHTML = `${esc(t("stop.current", { stop: "" }))}<a href="${href}">${esc(stopId)}</a>`;
    tourIn(lang).then((tour) => {
      const stop = tour?.stops.find((s) => s.id === stopId);
      const link = el.querySelector("a");
      if (stop && link && link.getAttribute("href") === href) link.textContent = pick(stop.title, lang);
    });
  }

  // Play a stop's narration: the cue's language, else the interface language (the tour
  // document falls back to its default language when it has no narration in that one).
  async function playNarration({ stop: stopId, lang: cueLang }) {
    const box = $("#narration");
    box.textContent = t("cue.narration");
    const tour = await tourIn(cueLang || lang);
    const narration = tour?.stops.find((s) => s.id === stopId)?.narration || {};
    const track = narration[cueLang || lang] ?? Object.values(narration)[0];
    const source = track?.audio?.find((a) => new Audio().canPlayType(a.mime)) ?? track?.audio?.[0];
    if (!source || ended) return;
    audio?.pause();
    audio = new Audio(source.url);
    try {
      await audio.play();
    } catch (err) {
      // Browsers refuse sound until the person has touched the page: offer a button.
      if (err.name !== "NotAllowedError") {
        box.textContent = t("narration.unavailable");
        return;
      }
      const button = document.createElement("button");
      button.type = "button";
      button.className = "primary";
      button.textContent = t("narration.tap");
      const player = audio;
      button.addEventListener("click", () => {
        button.remove();
        player.play().catch(() => { box.textContent = t("narration.unavailable"); });
      });
      box.replaceChildren(button);
    }
  }

  // A cue's effect. `quiet` re-applies a cue's visible state without sound (used to put
  // back cues that a newer state snapshot did not yet include).
  function effect(cue, { quiet = false } = {}) {
    const p = cue.params || {};
    if (cue.action === "lights") showLights(p);
    else if (cue.action === "scene") showScene(p.scene);
    else if (cue.action === "stop") {
      showStop(p.stop);
      if ("scene" in p) showScene(p.scene);
    } else if (cue.action === "narration" && !quiet) {
      if (connection.serverNow() - cue.at < LATE_NARRATION_MS) playNarration(p);
    }
  }

  function markApplied(seq) {
    applied.add(seq);
    window.__appliedSeqs.push(seq);
    stage.dataset.appliedSeq = String(seq);
    stage.dataset.appliedAt = String(connection.serverNow());
    save(eventId, { applied: [seq] });
  }

  // Pending cues by seq: each is scheduled once, and re-armed when the clock is synced
  // (a cue scheduled with the unsynced clock would otherwise play off by the offset).
  const pending = new Map(); // seq -> {cue, timer}
  function schedule(cue) {
    if (applied.has(cue.seq) || pending.has(cue.seq)) return;
    const entry = { cue, timer: null };
    pending.set(cue.seq, entry);
    arm(entry);
  }
  function arm(entry) {
    if (entry.timer) { clearTimeout(entry.timer); timers.delete(entry.timer); }
    const id = connection.at(entry.cue.at, () => {
      timers.delete(id);
      pending.delete(entry.cue.seq);
      if (applied.has(entry.cue.seq) || ended) return;
      effect(entry.cue);
      markApplied(entry.cue.seq);
    });
    entry.timer = id;
    timers.add(id);
  }

  // A state from welcome or snapshot: show it, schedule what it has pending, and put back
  // the visible effect of pending cues this browser already played (its clock ran ahead of
  // the server's fold by a few ms).
  function applyState(state) {
    if (!state) return;
    showLights(state.lights || {});
    showScene(state.scene);
    showStop(state.stop);
    const scheduled = [...(state.scheduled || [])].sort((a, b) => a.at - b.at || a.seq - b.seq);
    for (const cue of scheduled) {
      if (applied.has(cue.seq)) effect(cue, { quiet: true });
      else schedule(cue);
    }
    if (state.counts) showPresence(state.counts.present);
  }

  function showPresence(count) {
    const el = $("#presence");
    el.dataset.count = String(count);
    el.textContent = t("present", { n: count });
  }

  // --- Reactions ---------------------------------------------------------------------------
  const shown = new Map(); // emoji -> count, shown for a few seconds after the last burst
  let fade = null;
  function showReactions(counts) {
    for (const [emoji, n] of Object.entries(counts)) shown.set(emoji, (shown.get(emoji) || 0) + n);
    const el = $("#reactions");
    el.textContent = [...shown].map(([emoji, n]) => `${emoji} ×${n}`).join("  ");
    el.classList.add("visible");
    if (fade) { clearTimeout(fade); timers.delete(fade); }
    fade = later(4000, () => { shown.clear(); el.textContent = ""; el.classList.remove("visible"); });
  }
  $("#react-buttons").addEventListener("click", (e) => {
    const button = e.target.closest("button[data-emoji]");
    if (button) connection?.send({ type: "react", emoji: button.dataset.emoji });
  });

  // --- The connection ----------------------------------------------------------------------
  const ticket = await ticketFor(eventId);
  if (!stage.isConnected) return null; // another view was opened meanwhile
  connection = new LiveConnection(eventId, ticket, {
    getTicket: async () => (await newTicket(eventId)).ticket,
  });
  if (Number.isInteger(saved.seq)) connection.seq = saved.seq; // resume: connect with from_seq
  let welcomeSeq = 0;
  let welcomed = false; // a welcome arrived on the current socket
  let renewedInvalid = false;

  function finish(key) {
    ended = true;
    setState(key);
    if (key === "live.ended") $("#event-status").textContent = t("status.ended");
    announce(t(key));
    for (const { timer } of pending.values()) clearTimeout(timer);
    pending.clear();
    connection.close();
  }

  connection.addEventListener("welcome", ({ detail: msg }) => {
    welcomed = true;
    if (msg.mode === "replay") { finish("live.ended"); return; } // it ended meanwhile
    welcomeSeq = msg.seq;
    setState("live.connected");
    $("#event-status").textContent = t(`status.${msg.event?.status || event.status}`);
    applyState(msg.state);
    save(eventId, { seq: connection.seq });
  });
  connection.addEventListener("snapshot", ({ detail: msg }) => {
    welcomeSeq = msg.seq;
    applyState(msg.state);
    save(eventId, { seq: connection.seq });
  });
  connection.addEventListener("clock", ({ detail: sample }) => {
    const ms = sample.delay / 2;
    $("#live-clock").textContent = t("live.clock", { ms: ms < 10 ? ms.toFixed(1) : Math.round(ms) });
    for (const entry of pending.values()) arm(entry);
  });
  connection.addEventListener("cue", ({ detail: cue }) => {
    if (cue.replay) return;
    save(eventId, { seq: connection.seq });
    if (cue.seq <= welcomeSeq && !pending.has(cue.seq) && !applied.has(cue.seq)) {
      // Caught up from history: it played while we were away, and the welcome's state
      // already shows its effect (docs/live-protocol.md §5). Count it as applied.
      const stillPending = cue.at > connection.serverNow();
      if (stillPending) schedule(cue);
      else markApplied(cue.seq);
      return;
    }
    schedule(cue);
  });
  for (const kind of ["chat", "moderate"]) {
    connection.addEventListener(kind, () => save(eventId, { seq: connection.seq }));
  }
  connection.addEventListener("end", () => {
    save(eventId, { seq: connection.seq });
    finish("live.ended");
  });
  connection.addEventListener("presence", ({ detail: msg }) => showPresence(msg.count));
  connection.addEventListener("reactions", ({ detail: msg }) => showReactions(msg.counts || {}));
  connection.addEventListener("close", async ({ detail: { code } }) => {
    const opened = welcomed;
    welcomed = false;
    if (ended || connection.closed) return;
    if (code === 4002) { finish("live.ended"); return; }
    if (code === 4001) { finish("live.kicked"); return; }
    if (code === 1008 || code === 1009) { finish("live.closed"); return; }
    setState("live.reconnecting");
    // LiveConnection renews the ticket itself on 4003 and reconnects after any other close.
    // A socket that dropped after its welcome just reconnects. But a browser never sees why
    // an upgrade was refused (401 ticket_expired arrives as 1006), so when the socket never
    // opened, ask the same URL over plain HTTP: the server checks the ticket before it looks
    // for the upgrade, and answers 400 websocket_expected when the ticket is fine.
    if (code === 4003 || opened) return;
    const expired = !(Date.parse(loadSaved(eventId).expires_at) > connection.serverNow());
    const verdict = expired ? { status: 401, code: "ticket_expired" } : await checkTicket();
    if (verdict?.status === 404) { finish("live.closed"); return; }
    if (verdict?.status !== 401) return; // a network failure, a full event: retry as is
    // An invalid ticket may be one kept from before the server's secret changed: renew it
    // once; a second invalid one means stop (docs/live-protocol.md §9).
    if (verdict.code === "ticket_invalid" && renewedInvalid) { finish("live.closed"); return; }
    if (verdict.code === "ticket_invalid") renewedInvalid = true;
    try {
      connection.ticket = (await newTicket(eventId)).ticket; // used by the next retry
    } catch {
      // Offline or rate limited: the next failed retry asks again.
    }
  });

  async function checkTicket() {
    const url = `/v1/events/${encodeURIComponent(eventId)}/live?ticket=${encodeURIComponent(connection.ticket)}`;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      const body = await response.json().catch(() => null);
      return { status: response.status, code: body?.error?.code };
    } catch {
      return null;
    }
  }

  setState("live.connecting");
  connection.connect();

  return () => {
    ended = true;
    for (const id of timers) clearTimeout(id);
    timers.clear();
    pending.clear();
    audio?.pause();
    view3d?.dispose();
    connection.close();
  };
}
