// A stop's narration: the browser's own audio player (play, pause, seek; the server answers
// its Range requests), a Play button of ours, a choice of language, captions from the
// WebVTT subtitles shown in the page (and announced), and the full transcript.
import { t } from "./i18n.js";

// A language's name in itself ("English", "简体中文"), so a visitor finds their own.
export function languageName(code) {
  try {
    return new Intl.DisplayNames([code], { type: "language" }).of(code) || code;
  } catch {
    return code;
  }
}

// The <source>s a browser tries in order, taking the first it can play: put the formats it
// says it can play first (some builds lack AAC, so .m4a may not play where .mp3 does), and
// leave out those it says it cannot.
function playableFirst(audio, sources) {
  const rank = { probably: 0, maybe: 1 };
  return sources
    .map((s, i) => ({ ...s, rank: rank[audio.canPlayType(s.mime || "")] ?? 2, i }))
    .filter((s) => s.rank < 2)
    .sort((a, b) => a.rank - b.rank || a.i - b.i);
}

function element(tag, props = {}, ...children) {
  const el = Object.assign(document.createElement(tag), props);
  el.append(...children);
  return el;
}

// `stop.narration` maps languages to {audio: [{url, mime}], subtitles: {url}, transcript}.
// `languages` lists every language offered (a document fetched for one language holds only
// that one's narration); `onLanguage(lang)` is told of a switch and may return (a promise
// of) that language's narration when `stop` lacks it.
export function mountNarration(container, stop, lang, { onLanguage, languages } = {}) {
  const offered = languages?.length ? languages : Object.keys(stop.narration || {});
  const section = element("section", { className: "narration stack" });
  section.setAttribute("aria-label", t("narration"));

  const play = element("button", { type: "button", className: "primary narration-play" });
  const select = element("select", { className: "narration-lang" });
  for (const code of offered) select.append(element("option", { value: code }, languageName(code)));
  const label = element("label", { className: "narration-lang-label" },
    element("span", {}, t("narration.language")), " ", select);
  const audio = element("audio", { controls: true, preload: "metadata" });
  // Captions as page text: readable at any text size and theme, and announced politely.
  const captions = element("p", { className: "captions" });
  captions.setAttribute("aria-live", "polite");
  const transcriptText = element("p", { className: "transcript-text" });
  const transcript = element("details", { className: "transcript" },
    element("summary", {}, t("narration.transcript")), transcriptText);
  const problem = element("p", { className: "error", hidden: true });
  problem.setAttribute("role", "alert");
  section.append(element("div", { className: "row" }, play, label), audio, captions,
    transcript, problem);
  container.append(section);

  let current = null; // the language loaded
  let loading = 0; // guards against a slower earlier switch finishing last

  const showPlaying = () => {
    const playing = !audio.paused && !audio.ended;
    play.textContent = t(playing ? "narration.pause" : "narration.play");
    play.setAttribute("aria-pressed", String(playing));
  };
  const fail = (message) => {
    problem.textContent = message;
    problem.hidden = !message;
  };

  const showCue = (track) => {
    // getCueAsHTML drops WebVTT markup (<v Speaker>, <b>) and keeps the words.
    captions.textContent = [...(track.activeCues || [])]
      .map((cue) => cue.getCueAsHTML().textContent).join("\n");
  };

  function load(code, narration) {
    audio.pause();
    audio.replaceChildren();
    captions.textContent = "";
    fail("");
    current = code;
    select.value = code;
    // Captions and transcript are in the narration's language, whatever the interface's.
    captions.lang = transcriptText.lang = code;
    if (!narration) {
      audio.removeAttribute("src");
      audio.load();
      play.disabled = true;
      transcript.hidden = true;
      fail(t("narration.missing", { lang: languageName(code) }));
      showPlaying();
      return;
    }
    const sources = playableFirst(audio, narration.audio || []);
    for (const s of sources) audio.append(element("source", { src: s.url, type: s.mime }));
    // Errors come from the <source>s, not the <audio>: the last failing means none played.
    audio.lastElementChild?.addEventListener("error", () => fail(t("narration.unplayable")));
    if (narration.subtitles?.url) {
      const track = element("track", { kind: "captions", srclang: code, default: true,
        src: narration.subtitles.url, label: languageName(code) });
      audio.append(track);
      // Hidden, not showing: cues still fire, the page renders them once (not twice).
      track.track.mode = "hidden";
      track.track.addEventListener("cuechange", () => showCue(track.track));
    }
    transcriptText.textContent = narration.transcript || "";
    transcript.hidden = !narration.transcript;
    play.disabled = !sources.length;
    if (!sources.length) fail(t("narration.unplayable"));
    audio.load(); // the new sources and track, from the start
    showPlaying();
  }

  async function setLanguage(code) {
    const ticket = ++loading;
    play.disabled = true;
    let narration = stop.narration?.[code];
    try {
      const given = await onLanguage?.(code);
      narration ||= given;
    } catch (err) {
      if (ticket === loading) fail(t("error", { message: err.message }));
      return;
    }
    if (ticket === loading) load(code, narration);
  }

  play.addEventListener("click", () => {
    if (audio.paused || audio.ended) {
      audio.play().catch((err) => {
        if (err.name !== "AbortError") fail(t("narration.unplayable"));
      });
    } else {
      audio.pause();
    }
  });
  select.addEventListener("change", () => setLanguage(select.value));
  for (const type of ["play", "pause", "ended"]) audio.addEventListener(type, showPlaying);
  audio.addEventListener("emptied", () => { captions.textContent = ""; });

  load(lang, stop.narration?.[lang]);

  return {
    audio, captions, setLanguage,
    get language() { return current; },
    dispose() {
      loading++;
      audio.pause();
      audio.replaceChildren();
      audio.removeAttribute("src");
      audio.load(); // drops the connection still fetching audio
      section.remove();
    },
  };
}
