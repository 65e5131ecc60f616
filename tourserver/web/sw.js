// The offline service worker. A tour is downloaded on request (the page posts
// {type: "download", tour, lang}): every file of its pack (GET /v1/tours/{id}/pack) and the
// app's own files go into Cache Storage, with progress posted back. Afterwards the app and
// the tour work with no signal: content-addressed files (/c/, /vendor/) come from the cache
// first, everything else from the network with the cache as fallback.
const APP_CACHE = "tourserver-app-v1";
const TOUR_CACHE = (tour) => `tourserver-tour-${tour}`;

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

async function download(source, { tour, lang, appFiles }) {
  const say = (message) => source?.postMessage({ tour, ...message });
  try {
    const packUrl = `/v1/tours/${encodeURIComponent(tour)}/pack${lang ? `?lang=${encodeURIComponent(lang)}` : ""}`;
    const pack = await (await fetch(packUrl)).json();
    const urls = [...new Set([packUrl, ...pack.files.map((f) => f.url)])];
    const app = [...new Set(appFiles)];
    const total = pack.total_bytes;
    let done = 0;
    const tourCache = await caches.open(TOUR_CACHE(tour));
    const appCache = await caches.open(APP_CACHE);
    for (const url of app) {
      const response = await fetch(url, { cache: "no-cache" });
      if (response.ok) await appCache.put(url, response);
    }
    for (const url of urls) {
      const response = await fetch(url);
      if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
      const size = Number(response.headers.get("Content-Length")) || 0;
      await tourCache.put(url, response);
      done += size;
      say({ type: "progress", done: Math.min(done, total), total });
    }
    say({ type: "done", total, files: urls.length });
  } catch (err) {
    say({ type: "failed", message: String(err.message || err) });
  }
}

self.addEventListener("message", (event) => {
  if (event.data?.type === "download") event.waitUntil(download(event.source, event.data));
});

// A Range request answered from a cached whole file (audio seeks while offline).
async function ranged(request, response) {
  const match = /bytes=(\d*)-(\d*)/.exec(request.headers.get("Range") || "");
  if (!match) return response;
  const body = await response.blob();
  const size = body.size;
  let start = match[1] === "" ? size - Number(match[2]) : Number(match[1]);
  let end = match[1] === "" || match[2] === "" ? size - 1 : Number(match[2]);
  start = Math.max(0, start);
  end = Math.min(end, size - 1);
  if (start > end) return new Response(null, { status: 416, headers: { "Content-Range": `bytes */${size}` } });
  return new Response(body.slice(start, end + 1), {
    status: 206,
    headers: {
      "Content-Type": response.headers.get("Content-Type") || "application/octet-stream",
      "Content-Range": `bytes ${start}-${end}/${size}`,
      "Content-Length": String(end - start + 1),
      "Accept-Ranges": "bytes",
    },
  });
}

async function fromCache(request) {
  const url = new URL(request.url);
  const hit = await caches.match(url.pathname + url.search, { ignoreVary: true })
    || (request.mode === "navigate" ? await caches.match("/", { ignoreVary: true }) : undefined);
  if (!hit) return undefined;
  return request.headers.has("Range") ? ranged(request, hit) : hit;
}

self.addEventListener("fetch", (event) => {
  const { request } = event;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== location.origin) return;
  if (url.pathname.endsWith("/live")) return; // the live socket is never cached
  const immutable = url.pathname.startsWith("/c/") || url.pathname.startsWith("/vendor/");
  event.respondWith((async () => {
    if (immutable) {
      const hit = await fromCache(request);
      if (hit) return hit;
    }
    try {
      return await fetch(request);
    } catch (err) {
      const hit = await fromCache(request);
      if (hit) return hit;
      throw err;
    }
  })());
});
