// Threads for the page (docs/protocol.md, "Threads"): under each message a link that says
// "N replies · last HH:MM" (or "Reply"), which opens a panel showing the root and its
// replies page by page with a box to reply in. Replies are ordinary timeline entries with
// a thread_root: app.js keeps them with the room's entries (so edits, deletes and
// reactions find them) but shows them here, not in the room's list, and tells this file
// about each one. Opening a thread marks it read (thread_read). Kept apart from app.js; it
// uses the small interface app.js publishes as window.kchatApp.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const app = () => window.kchatApp;
  const T = { room: null, root: 0, lastShown: 0, hasMore: false, loading: false };

  function label(t) {
    if (!t || !t.reply_count) return 'Reply';
    let s = `${t.reply_count} ${t.reply_count === 1 ? 'reply' : 'replies'}`;
    if (t.last_reply_at) s += ` · last ${app().fmtTime(t.last_reply_at)}`;
    if (t.unread) s += ` · ${t.unread} unread`;
    return s;
  }

  // summaryElement is the link under a message that opens its thread.
  function summaryElement(r, m) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'thread-link' + (m.thread && m.thread.unread ? ' unread' : '');
    b.textContent = label(m.thread);
    b.setAttribute('aria-label', m.thread && m.thread.reply_count ? `Open the thread: ${label(m.thread)}` : 'Reply in a thread');
    b.onclick = () => open(r, m.seq);
    return b;
  }

  function shows(r, root) { return !$('thread-panel').hidden && T.room === r.id && T.root === root; }

  // onReply takes a reply entry app.js received. A live one (not yet counted by the
  // summary history gave its root: its seq is past the summary's last_seq) updates the
  // root's summary; either is shown if its thread is open.
  function onReply(r, m, live) {
    const root = r.msgs.get(m.thread_root);
    const me = app().user().id;
    if (root && live) {
      const t = root.thread = root.thread || { reply_count: 0, last_seq: 0, participant: root.sender === me, unread: 0 };
      if (m.seq > t.last_seq) {
        t.reply_count++;
        t.last_reply_at = m.sent_at;
        t.last_seq = m.seq;
        if (m.sender === me) t.participant = true;
        else if (t.participant && !shows(r, root.seq)) t.unread++;
        app().rerender(r, root);
      }
    }
    if (shows(r, m.thread_root) && m.seq > T.lastShown) {
      append(r, m);
      if (live) markRead(r);
    }
  }

  // changed takes an edit or delete of a reply: the open thread shows it again, and a
  // delete lowers its root's count.
  function changed(r, reply, deleted) {
    const root = r.msgs.get(reply.thread_root);
    if (deleted && root && root.thread) {
      root.thread.reply_count = Math.max(0, root.thread.reply_count - 1);
      app().rerender(r, root);
    }
    const el = shows(r, reply.thread_root) && document.querySelector(`#thread-list li[data-seq="${reply.seq}"]`);
    if (el) el.replaceWith(entry(r, reply));
  }

  function entry(r, m) {
    const el = app().entryElement(r, m);
    for (const l of el.querySelectorAll('.thread-link')) l.remove();
    return el;
  }

  function append(r, m) {
    $('thread-list').append(entry(r, m));
    T.lastShown = Math.max(T.lastShown, m.seq);
  }

  async function open(r, root) {
    T.room = r.id;
    T.root = root;
    T.lastShown = 0;
    $('thread-list').replaceChildren();
    $('thread-root').replaceChildren();
    $('thread-status').textContent = 'Loading…';
    $('thread-panel').hidden = false;
    await more(r, true);
    $('thread-text').focus();
  }

  // more reads the next page of the open thread (the first when first is set).
  async function more(r, first) {
    if (T.loading) return;
    T.loading = true;
    const room = T.room;
    const root = T.root;
    try {
      const f = await app().request({ type: 'thread', room, root, after_seq: first ? 0 : T.lastShown });
      if (T.room !== room || T.root !== root) return; // another thread was opened meanwhile
      if (first) {
        const known = r.msgs.get(root);
        if (known) known.thread = f.root.thread; // the freshest summary
        $('thread-root').replaceChildren(entry(r, known || f.root));
      }
      for (const m of f.messages || []) {
        if (!r.msgs.has(m.seq)) r.msgs.set(m.seq, m);
        if (m.seq > T.lastShown) append(r, r.msgs.get(m.seq));
      }
      T.hasMore = !!f.has_more;
      $('thread-more').hidden = !T.hasMore;
      $('thread-status').textContent = T.lastShown ? '' : 'No replies yet.';
      markRead(r);
    } catch (e) {
      $('thread-status').textContent = 'Could not load the thread: ' + e.message;
    } finally {
      T.loading = false;
    }
  }

  // markRead moves the thread's read marker to the last reply shown.
  async function markRead(r) {
    if (!T.lastShown) return;
    const root = r.msgs.get(T.root);
    try {
      const f = await app().request({ type: 'thread_read', room: T.room, root: T.root, seq: T.lastShown });
      if (root && root.thread) {
        root.thread.unread = f.unread;
        root.thread.participant = true;
        app().rerender(r, root);
      }
    } catch (e) {
      // Best effort: the count stays until the next try.
    }
  }

  function close() {
    $('thread-panel').hidden = true;
    T.room = null;
    T.root = 0;
  }

  function sendReply(ev) {
    ev.preventDefault();
    const ta = $('thread-text');
    const text = ta.value; // sent as typed, like the room's composer
    if (!text.trim() || !T.room) return;
    app().sendReply(T.room, T.root, text);
    ta.value = '';
  }

  function init() {
    $('thread-close').onclick = close;
    $('thread-more').onclick = () => { const r = T.room && app().room(T.room); if (r) more(r, false); };
    $('thread-form').onsubmit = sendReply;
    $('thread-text').addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) sendReply(ev);
      if (ev.key === 'Escape') close();
    });
  }

  window.kchatThreads = { summaryElement, onReply, changed, close, shows: (r, root) => shows(r, root) };
  init();
})();
