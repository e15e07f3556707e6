// Notification preferences and Web Push for the page (docs/notifications.md): a panel
// under "Notifications" for the default level, do-not-disturb hours, e-mail on/off and
// one room's level and mute, and the "Enable push" button that registers sw.js and a push
// subscription with the gateway's VAPID key. Kept apart from app.js: it only needs the
// session app.js keeps in sessionStorage and the REST API.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);

  function token() {
    try {
      return JSON.parse(sessionStorage.getItem('kchat.session') || 'null').token;
    } catch (e) {
      return null;
    }
  }

  async function call(method, path, body) {
    const headers = { 'Content-Type': 'application/json' };
    const t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    let data = {};
    try { data = await res.json(); } catch (e) { /* empty body */ }
    if (!res.ok) {
      const err = new Error(data.message || `HTTP ${res.status}`);
      err.status = res.status;
      throw err;
    }
    return data;
  }

  function say(text, isError) {
    const p = $('prefs-status');
    p.textContent = text;
    p.classList.toggle('error', !!isError);
  }

  let current = null; // the last GET answer

  async function load() {
    say('');
    try {
      current = await call('GET', '/api/me/notification-preferences');
    } catch (e) {
      say(e.message, true);
      return;
    }
    $('prefs-level').value = current.level;
    $('prefs-dnd').checked = !!current.dnd;
    $('prefs-dnd-start').value = current.dnd ? current.dnd.start : '22:00';
    $('prefs-dnd-end').value = current.dnd ? current.dnd.end : '07:00';
    $('prefs-dnd-zone').value = current.dnd ? current.dnd.zone : (Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC');
    $('prefs-email').checked = !!(current.email && current.email.enabled);
    $('prefs-email').disabled = !(current.email && current.email.address);
    $('prefs-email-addr').textContent = current.email && current.email.address ? current.email.address : 'no address set';
    let rooms = { mine: [] };
    try { rooms = await call('GET', '/api/rooms'); } catch (e) { /* the room part stays empty */ }
    const sel = $('prefs-room');
    sel.replaceChildren();
    for (const r of rooms.mine || []) {
      const o = document.createElement('option');
      o.value = r.id;
      o.textContent = r.kind === 'dm' ? (r.name || r.id) : '#' + (r.name || r.id);
      sel.append(o);
    }
    showRoom();
  }

  function showRoom() {
    const id = $('prefs-room').value;
    const s = (current && current.rooms || []).find((r) => r.room === id);
    $('prefs-room-level').value = s && s.level ? s.level : '';
    $('prefs-room-muted').textContent = s && s.muted_until ? 'muted until ' + new Date(s.muted_until).toLocaleString() : '';
  }

  async function saveDefaults(ev) {
    ev.preventDefault();
    const body = { level: $('prefs-level').value, dnd: null };
    if ($('prefs-dnd').checked) {
      body.dnd = { start: $('prefs-dnd-start').value, end: $('prefs-dnd-end').value, zone: $('prefs-dnd-zone').value };
    }
    try {
      current = await call('PUT', '/api/me/notification-preferences', body);
      if (current.email && current.email.address && $('prefs-email').checked !== current.email.enabled) {
        current.email = await call('PUT', '/api/me/email', { address: current.email.address, enabled: $('prefs-email').checked });
      }
      say('Saved.');
    } catch (e) {
      say(e.message, true);
    }
  }

  async function saveRoom(ev) {
    ev.preventDefault();
    const id = $('prefs-room').value;
    if (!id) return;
    const minutes = parseInt($('prefs-room-mute').value, 10);
    const body = { level: $('prefs-room-level').value || null, muted_until: null };
    if (minutes > 0) body.muted_until = new Date(Date.now() + minutes * 60000).toISOString();
    try {
      await call('PUT', '/api/rooms/' + encodeURIComponent(id) + '/notification-preferences', body);
      await load();
      $('prefs-room').value = id;
      showRoom();
      say('Saved.');
    } catch (e) {
      say(e.message, true);
    }
  }

  async function resetRoom() {
    const id = $('prefs-room').value;
    if (!id) return;
    try {
      await call('DELETE', '/api/rooms/' + encodeURIComponent(id) + '/notification-preferences');
      await load();
      $('prefs-room').value = id;
      showRoom();
      say('Back to your defaults.');
    } catch (e) {
      say(e.message, true);
    }
  }

  // The VAPID key is base64url; PushManager wants its bytes.
  function keyBytes(b64url) {
    const s = atob(b64url.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - b64url.length % 4) % 4));
    return Uint8Array.from(s, (c) => c.charCodeAt(0));
  }

  async function enablePush() {
    const btn = $('push-enable');
    try {
      const { public_key: key } = await call('GET', '/api/push/vapid-public-key');
      if (await Notification.requestPermission() !== 'granted') {
        say('Notifications are blocked for this site in the browser.', true);
        return;
      }
      const reg = await navigator.serviceWorker.register('/sw.js');
      await navigator.serviceWorker.ready;
      let sub = await reg.pushManager.getSubscription();
      if (!sub) sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) });
      const j = sub.toJSON();
      await call('POST', '/api/me/push-subscriptions', { endpoint: j.endpoint, keys: j.keys });
      btn.textContent = 'Disable push on this device';
      btn.dataset.on = '1';
      say('Push is on for this device.');
    } catch (e) {
      say('Push: ' + e.message, true);
    }
  }

  async function disablePush() {
    const btn = $('push-enable');
    try {
      const reg = await navigator.serviceWorker.getRegistration('/sw.js');
      const sub = reg && await reg.pushManager.getSubscription();
      if (sub) {
        await call('DELETE', '/api/me/push-subscriptions', { endpoint: sub.endpoint });
        await sub.unsubscribe();
      }
      btn.textContent = 'Enable push';
      delete btn.dataset.on;
      say('Push is off for this device.');
    } catch (e) {
      say('Push: ' + e.message, true);
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    const panel = $('prefs');
    if (!panel) return;
    panel.addEventListener('toggle', () => { if (panel.open) load(); });
    $('prefs-form').addEventListener('submit', saveDefaults);
    $('prefs-room-form').addEventListener('submit', saveRoom);
    $('prefs-room').addEventListener('change', showRoom);
    $('prefs-room-reset').addEventListener('click', resetRoom);
    const btn = $('push-enable');
    // Push needs a service worker, the Push API and a secure context (https or localhost).
    if ('serviceWorker' in navigator && 'PushManager' in window && window.isSecureContext) {
      btn.hidden = false;
      btn.addEventListener('click', () => (btn.dataset.on ? disablePush() : enablePush()));
    }
  });
})();
