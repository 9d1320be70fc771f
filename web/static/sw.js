// The dashboard's service worker: it shows the alerts a vault pushes
// (Web Push, encrypted for this browser) while no page of the dashboard is
// open, and a click on one opens the dashboard.

self.addEventListener("push", (e) => {
  let m;
  try { m = e.data ? e.data.json() : {}; } catch { m = { title: "Spells", body: e.data ? e.data.text() : "" }; }
  e.waitUntil(self.registration.showNotification(m.title || "Spells", { body: m.body || "", tag: m.tag, icon: "favicon.svg" }));
});

self.addEventListener("notificationclick", (e) => {
  e.notification.close();
  e.waitUntil(self.clients.matchAll({ type: "window" }).then((ws) => (ws.length ? ws[0].focus() : self.clients.openWindow("./"))));
});
