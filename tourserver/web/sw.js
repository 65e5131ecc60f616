// The offline service worker (issue 15: being built). Installed only when a tour is
// downloaded; until then it does nothing.
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
