// Attachments for the page (docs/attachments.md): the attach button uploads chosen files to
// the open room and keeps their ids until the next message takes them (app.js calls
// kchatAttach.take when it sends); messages show their files through kchatAttach.element:
// images as thumbnails, other files as their names, a click opening the full file. Files are
// fetched with the session token and shown through blob: URLs, since an <img> cannot send a
// bearer header. Kept apart from app.js: it needs only the session app.js keeps in
// sessionStorage and the REST API.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);

  function session() {
    try {
      return JSON.parse(sessionStorage.getItem('kchat.session') || 'null');
    } catch (e) {
      return null;
    }
  }

  function authHeaders() {
    const s = session();
    return s && s.token ? { Authorization: 'Bearer ' + s.token } : {};
  }

  function say(text, isError) {
    const p = $('attach-status');
    if (!p) return;
    p.textContent = text;
    p.classList.toggle('error', !!isError);
  }

  function size(n) {
    if (n < 1024) return n + ' B';
    if (n < 1 << 20) return (n / 1024).toFixed(1) + ' KiB';
    return (n / (1 << 20)).toFixed(1) + ' MiB';
  }

  const pending = []; // {id, filename, room}, uploaded and not sent yet

  function renderPending() {
    const ul = $('attach-pending');
    if (!ul) return;
    ul.replaceChildren();
    for (const p of pending) {
      const li = document.createElement('li');
      li.textContent = p.filename + ' ';
      const x = document.createElement('button');
      x.type = 'button';
      x.className = 'secondary';
      x.textContent = '×';
      x.setAttribute('aria-label', 'Do not send ' + p.filename);
      x.onclick = () => {
        pending.splice(pending.indexOf(p), 1);
        renderPending();
      };
      li.append(x);
      ul.append(li);
    }
    ul.hidden = pending.length === 0;
  }

  async function upload(file, room) {
    const body = new FormData();
    body.append('file', file, file.name);
    const res = await fetch('/api/rooms/' + encodeURIComponent(room) + '/uploads', { method: 'POST', headers: authHeaders(), body });
    let data = {};
    try { data = await res.json(); } catch (e) { /* empty body */ }
    if (!res.ok) throw new Error(data.message || `HTTP ${res.status}`);
    return data;
  }

  async function onFiles(ev) {
    const room = sessionStorage.getItem('kchat.current');
    const files = Array.from(ev.target.files || []);
    ev.target.value = '';
    if (!room || !files.length) return;
    for (const f of files) {
      say('Uploading ' + f.name + '…');
      try {
        const a = await upload(f, room);
        pending.push({ id: a.id, filename: a.filename, room });
        renderPending();
        say('Attached ' + a.filename + ' (' + size(a.size) + '): it goes with your next message.');
      } catch (e) {
        say(f.name + ' not attached: ' + e.message, true);
      }
    }
  }

  // blobURL fetches an attachment with the session token; null when it is not (or no
  // longer) available to this user.
  async function blobURL(path) {
    const res = await fetch(path, { headers: authHeaders() });
    if (!res.ok) return null;
    return URL.createObjectURL(await res.blob());
  }

  async function open(a) {
    const url = await blobURL('/api/attachments/' + encodeURIComponent(a.id));
    if (!url) {
      say(a.filename + ' is no longer available', true);
      return;
    }
    const link = document.createElement('a');
    link.href = url;
    // Images open in a new tab; anything else is saved under its name, never shown as a
    // page of this origin.
    if (a.content_type.startsWith('image/')) link.target = '_blank';
    else link.download = a.filename;
    link.rel = 'noopener';
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  function element(atts) {
    const box = document.createElement('div');
    box.className = 'attachments';
    for (const a of atts) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'attachment';
      b.title = `${a.filename} (${a.content_type}, ${size(a.size)})`;
      b.onclick = () => open(a);
      if (a.thumbnail) {
        const img = document.createElement('img');
        img.alt = a.filename;
        img.className = 'thumb';
        img.dataset.attachment = a.id;
        // Reserve the thumbnail's box (it fits 320x320) so the list does not jump.
        const scale = Math.min(1, 320 / Math.max(a.width || 1, a.height || 1));
        img.width = Math.max(1, Math.round((a.width || 1) * scale));
        img.height = Math.max(1, Math.round((a.height || 1) * scale));
        blobURL('/api/attachments/' + encodeURIComponent(a.id) + '/thumbnail').then((url) => {
          if (url) {
            img.onload = () => URL.revokeObjectURL(url);
            img.src = url;
          }
        });
        b.append(img);
      } else {
        b.textContent = a.filename + ' · ' + size(a.size); // textContent: names are shown, not interpreted
      }
      box.append(b);
    }
    return box;
  }

  // take returns the ids of the files waiting for a message in room, in the order they
  // were attached, and forgets them.
  function take(room) {
    const ids = [];
    for (let i = 0; i < pending.length;) {
      if (pending[i].room === room) {
        ids.push(pending[i].id);
        pending.splice(i, 1);
      } else i++;
    }
    renderPending();
    if (ids.length) say('');
    return ids;
  }

  window.kchatAttach = { take, element };

  document.addEventListener('DOMContentLoaded', () => {
    const btn = $('attach-btn');
    const input = $('attach-input');
    if (!btn || !input) return;
    btn.addEventListener('click', () => input.click());
    input.addEventListener('change', onFiles);
  });
})();
