// kchat's service worker: shows the Web Push notifications the notification service sends
// (payload: {id, title, preview, url, ...}, docs/notifications.md) and opens the room when
// one is clicked. The tag is the notification id, so a push delivered twice (at least
// once, after a crash) replaces itself instead of showing twice.
'use strict';

self.addEventListener('push', (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (e) {
    data = { title: 'kchat', preview: event.data ? event.data.text() : '' };
  }
  event.waitUntil(self.registration.showNotification(data.title || 'kchat', {
    body: data.preview || '',
    tag: data.id || undefined,
    data: { url: data.url || '/' },
  }));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = new URL((event.notification.data && event.notification.data.url) || '/', self.location.origin).href;
  event.waitUntil(self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then((windows) => {
    for (const w of windows) {
      if (new URL(w.url).origin === self.location.origin && 'focus' in w) {
        return w.navigate(url).then((c) => (c || w).focus());
      }
    }
    return self.clients.openWindow(url);
  }));
});
