// The inbox's service worker: shows the push notifications the notifier sends (their JSON is
// {title, body, url, tag}) and, on a click, brings the inbox forward at that url. A subscription
// the browser renews is sent again by the page each time it opens (app.js, syncPush): the worker
// has no access token of its own.
"use strict";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let note = {};
  try {
    note = event.data ? event.data.json() : {};
  } catch (error) {
    note = { body: event.data ? event.data.text() : "" };
  }
  const url = typeof note.url === "string" && note.url.startsWith("/") ? note.url : "/";
  event.waitUntil(self.registration.showNotification(note.title || "Moltbot", {
    body: note.body || "",
    tag: note.tag || undefined,
    renotify: Boolean(note.tag), // a newer notification of the same conversation alerts again
    icon: "/static/icons/icon-192.png",
    badge: "/static/icons/icon-192.png",
    data: { url },
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = new URL((event.notification.data && event.notification.data.url) || "/", self.location.origin).href;
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const inbox = windows.find((client) => new URL(client.url).origin === self.location.origin);
    if (inbox) {
      await inbox.focus();
      inbox.postMessage({ type: "open", url }); // the page opens it without reloading
      return;
    }
    await self.clients.openWindow(url);
  })());
});
