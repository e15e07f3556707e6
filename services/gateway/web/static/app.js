// kchat's browser client. Plain JavaScript, no build step and nothing loaded from
// elsewhere. It logs in over the REST API of the gateway that served it, then keeps one
// WebSocket (protocol: docs/protocol.md) that it re-opens by itself, on the next gateway of
// the list when one is down, resuming every room from the last seq it has shown.
//
// Every piece of text that comes from a user is put on the page with textContent, never
// innerHTML, so markup in a message is shown, not run.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);

  // ---- configuration -------------------------------------------------------------------

  const params = new URLSearchParams(location.search);
  // ?gateways=http://host:8081,http://host:8082 lists gateways to fail over to; the page's
  // own gateway is tried first.
  const gateways = (() => {
    const list = [location.origin];
    for (const g of (params.get('gateways') || '').split(',')) {
      const s = g.trim().replace(/\/+$/, '');
      if (/^https?:\/\/[^/]+$/.test(s) && !list.includes(s)) list.push(s);
    }
    return list;
  })();
  // ?room=ID (the links in e-mail digests) opens that room once the room list is known,
  // if the user is in it; only on the first list, so it does not pull the user back later.
  let linkedRoom = params.get('room');
  // ?page=N sets the history page size (tests use a small one to exercise scroll-back).
  const pageSize = Math.min(200, Math.max(1, parseInt(params.get('page') || '50', 10) || 50));
  const TYPING_EVERY = 2000; // the gateway forwards at most one typing signal per 2 s
  const TYPING_SHOWN = 4000;
  const PING_EVERY = 60000; // frames, not WebSocket pings, keep us under the idle timeout
  const BACKOFF_MIN = 500;
  const BACKOFF_MAX = 10000;

  // ---- state ---------------------------------------------------------------------------

  const store = window.sessionStorage; // per tab: two people can use two tabs
  const S = {
    session: null, // {token, reconnect_token, user:{id, username}}
    ws: null,
    connected: false,
    gateway: '', // gateway id from welcome
    gwIndex: 0,
    attempt: 0,
    timer: null,
    countdown: null,
    useReconnect: false, // hello with the reconnect token (after the first welcome)
    haveAll: false, // the first hello's "all my rooms" subscription completed
    subscribedHere: new Set(),
    rooms: new Map(), // id -> room
    publicRooms: [],
    current: null,
    pending: new Map(), // client_msg_id -> {room, frame, el, state, tries}, oldest first
    outgoing: null, // client_msg_id of the pending frame on the wire (sendNext)
    retryTimer: null, // resends the outgoing frame after a retryable refusal
    refs: new Map(), // ref -> {resolve, reject}
    nextRef: 1,
    typing: new Map(), // room -> Map(name -> until)
    lastTyping: 0,
    editing: null, // {room, seq}
    lost: [], // rooms whose history could not be recovered
    pingTimer: null,
    usersTimer: null,
  };

  function room(id) {
    let r = S.rooms.get(id);
    if (!r) {
      r = { id, name: id, kind: id.startsWith('dm:') ? 'dm' : 'room', members: [], lastSeq: 0,
        cursor: null, msgs: new Map(), minSeq: null, hasMore: true, loaded: false, unread: 0, mine: false,
        role: '', muted: false, topic: '', private: false };
      S.rooms.set(id, r);
    }
    return r;
  }

  function label(r) {
    if (r.kind === 'dm') {
      const other = r.members.find((m) => m !== S.session.user.username);
      return '@' + (other || 'direct message');
    }
    return '#' + (r.name && r.name !== r.id ? r.name : r.id);
  }

  function newID() {
    const b = new Uint8Array(12);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }

  // ---- banner and status ----------------------------------------------------------------

  let bannerTimer = null;
  function banner(text, kind = 'warn', action = null) {
    clearTimeout(bannerTimer);
    const b = $('banner');
    if (!text) {
      b.hidden = true;
      return;
    }
    $('banner-text').textContent = text;
    b.dataset.kind = kind;
    const btn = $('banner-action');
    btn.hidden = !action;
    if (action) {
      btn.textContent = action.label;
      btn.onclick = action.run;
    }
    b.hidden = false;
    if (kind === 'ok') bannerTimer = setTimeout(() => showLost() || banner(null), 4000);
  }

  // showLost keeps the "could not be recovered" warning up until the user dismisses it.
  function showLost() {
    if (!S.lost.length) return false;
    banner(`History could not be fully recovered for ${S.lost.join(', ')}: some messages may be missing.`,
      'warn', { label: 'Dismiss', run: () => { S.lost = []; banner(null); } });
    return true;
  }

  function setConn(state, text) {
    const el = $('conn-status');
    el.dataset.state = state;
    el.dataset.gateway = S.gateway || '';
    el.textContent = text;
  }

  // ---- REST ----------------------------------------------------------------------------

  // api calls the page's own gateway first, then the others (which only works where they
  // allow this origin; WebSocket has no such restriction).
  async function api(method, path, body, token, bases = gateways) {
    let lastErr = null;
    for (const base of bases) {
      let res;
      try {
        res = await fetch(base + path, {
          method,
          headers: Object.assign({ 'Content-Type': 'application/json' }, token ? { Authorization: 'Bearer ' + token } : {}),
          body: body ? JSON.stringify(body) : undefined,
        });
      } catch (e) {
        lastErr = new Error('cannot reach the server');
        continue;
      }
      let data = {};
      try { data = await res.json(); } catch (e) { /* an empty or non-JSON body */ }
      if (!res.ok) {
        const err = new Error(data.message || `HTTP ${res.status}`);
        err.code = data.code;
        err.status = res.status;
        if (res.status >= 500) { lastErr = err; continue; }
        throw err;
      }
      return data;
    }
    throw lastErr || new Error('no gateway answered');
  }

  // ---- login ---------------------------------------------------------------------------

  function showLogin(message) {
    $('chat-view').hidden = true;
    $('login-view').hidden = false;
    $('login-error').textContent = message || '';
    $('login-user').focus();
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const action = ev.submitter ? ev.submitter.value : 'login';
    const username = $('login-user').value; // as typed: a stray space is refused below, not removed
    const password = $('login-pass').value;
    const err = $('login-error');
    if (!/^[A-Za-z0-9_-]{3,32}$/.test(username)) {
      err.textContent = 'The username must be 3–32 letters, digits, _ or -.';
      $('login-user').focus();
      return;
    }
    if (password.length < 8) {
      err.textContent = 'The password must have at least 8 characters.';
      $('login-pass').focus();
      return;
    }
    err.textContent = action === 'register' ? 'Registering…' : 'Logging in…';
    try {
      if (action === 'register') await api('POST', '/api/register', { username, password });
      const s = await api('POST', '/api/login', { username, password });
      $('login-pass').value = '';
      startSession(s);
    } catch (e) {
      err.textContent = e.code === 'invalid_credentials' ? 'Wrong username or password.'
        : e.code === 'username_taken' ? 'That username is taken. Log in instead?' : e.message;
    }
  }

  function startSession(s) {
    S.session = { token: s.token, reconnect_token: s.reconnect_token, user: s.user };
    store.setItem('kchat.session', JSON.stringify(S.session));
    $('login-view').hidden = true;
    $('chat-view').hidden = false;
    $('me').textContent = s.user.username;
    S.useReconnect = false;
    S.haveAll = false;
    connect();
    renderRooms();
    $('composer-text').focus();
  }

  function logout(message) {
    store.removeItem('kchat.session');
    if (S.ws) {
      const ws = S.ws;
      S.ws = null;
      try { ws.send(JSON.stringify({ type: 'quit' })); } catch (e) { /* already closed */ }
      ws.close(1000);
    }
    clearTimeout(S.timer);
    clearTimeout(S.invitesTimer);
    clearInterval(S.countdown);
    S.session = null;
    S.connected = false;
    S.rooms.clear();
    S.pending.clear();
    S.outgoing = null;
    clearTimeout(S.retryTimer);
    S.current = null;
    $('message-list').replaceChildren();
    $('room-list').replaceChildren();
    updateInviteForm(); // hides the forms and the panel of the room that was open
    banner(null);
    showLogin(message);
  }

  // ---- WebSocket -----------------------------------------------------------------------

  function wsURL(base) { return base.replace(/^http/, 'ws') + '/ws'; }

  function connect() {
    clearTimeout(S.timer);
    clearInterval(S.countdown);
    if (!S.session) return;
    const base = gateways[S.gwIndex % gateways.length];
    setConn('connecting', 'connecting…');
    let ws;
    try {
      ws = new WebSocket(wsURL(base));
    } catch (e) {
      scheduleReconnect(false, 'cannot open a connection');
      return;
    }
    S.ws = ws;
    let opened = false;
    let authRefused = false;
    let restart = false;
    ws.onopen = () => {
      opened = true;
      const hello = { type: 'hello', ref: 'hello' };
      if (S.useReconnect && S.session.reconnect_token) hello.reconnect_token = S.session.reconnect_token;
      else hello.token = S.session.token;
      if (S.haveAll) {
        // Resume: every room from the last seq we have shown. Nothing is missed and
        // nothing comes twice.
        hello.rooms = {};
        for (const r of S.rooms.values()) if (r.cursor !== null) hello.rooms[r.id] = r.cursor;
      }
      ws.send(JSON.stringify(hello));
      // Answered after hello's subscriptions: then we know every room we follow.
      if (!S.haveAll) ws.send(JSON.stringify({ type: 'ping', ref: 'init' }));
    };
    ws.onmessage = (ev) => {
      if (S.ws !== ws) return;
      let f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (f.type === 'error' && f.code === 'invalid_token') authRefused = true;
      if (f.type === 'reconnect') restart = true;
      onFrame(f);
    };
    ws.onclose = (ev) => {
      if (S.ws !== ws) return; // replaced or logged out
      S.ws = null;
      const was = S.connected;
      S.connected = false;
      S.subscribedHere.clear();
      clearInterval(S.pingTimer);
      // The frame on the wire may or may not have arrived: it goes again, first, after
      // the next welcome (a gateway that stored it answers "duplicate").
      S.outgoing = null;
      clearTimeout(S.retryTimer);
      for (const { reject } of S.refs.values()) reject(new Error('the connection was lost'));
      S.refs.clear();
      updateComposer();
      if (ev.code === 4001 || authRefused) {
        if (S.useReconnect) {
          // The reconnect token may have expired while the session token still works.
          S.useReconnect = false;
          connect();
        } else {
          logout('Your session has expired. Please log in again.');
        }
        return;
      }
      if (!opened || was) S.gwIndex = (S.gwIndex + 1) % gateways.length; // try the next one
      const why = ev.code === 1012 || restart ? 'The server is restarting.' : 'The connection was lost.';
      scheduleReconnect(restart || ev.code === 1012, why);
    };
  }

  // scheduleReconnect waits an exponential, jittered delay (none after a goodbye from a
  // gateway that is shutting down: the next one is up) and shows a countdown.
  function scheduleReconnect(immediate, why) {
    if (!S.session) return;
    S.attempt++;
    const d = Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** (S.attempt - 1));
    const wait = immediate && S.attempt === 1 ? 0 : d / 2 + Math.random() * (d / 2);
    const until = Date.now() + wait;
    setConn('connecting', 'reconnecting…');
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      banner(`${why} Reconnecting${left ? ' in ' + left + ' s' : '…'} (attempt ${S.attempt})`, 'warn',
        { label: 'Retry now', run: () => { S.attempt = 0; connect(); } });
    };
    tick();
    clearInterval(S.countdown);
    S.countdown = setInterval(tick, 1000);
    S.timer = setTimeout(connect, wait);
  }

  function send(frame) {
    if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return false;
    S.ws.send(JSON.stringify(frame));
    return true;
  }

  // sendNext writes the oldest pending message frame unless one is on the wire already.
  // One at a time keeps a user's messages in order: with several on the wire, a rate
  // limit can refuse one and accept the next (docs/protocol.md, "Rate limits"). Offline,
  // nothing goes out; the next welcome calls this again.
  function sendNext() {
    if (S.outgoing) return;
    for (const [id, p] of S.pending) {
      if (p.state !== 'pending') continue;
      if (send(p.frame)) S.outgoing = id;
      return;
    }
  }

  // settled is told that message id needs nothing more from the gateway, so that the
  // next pending one may go.
  function settled(id) {
    if (!id || id !== S.outgoing) return;
    S.outgoing = null;
    clearTimeout(S.retryTimer);
    sendNext();
  }

  // request sends a frame with a ref and resolves with the reply (rejects on an error frame
  // or a lost connection).
  function request(frame) {
    return new Promise((resolve, reject) => {
      if (!S.connected) { reject(new Error('not connected')); return; }
      const ref = 'r' + S.nextRef++;
      S.refs.set(ref, { resolve, reject });
      if (!send(Object.assign({}, frame, { ref }))) {
        S.refs.delete(ref);
        reject(new Error('not connected'));
      }
    });
  }

  function onFrame(f) {
    if (f.ref && S.refs.has(f.ref) && f.type !== 'subscribed' && f.type !== 'message') {
      const { resolve, reject } = S.refs.get(f.ref);
      S.refs.delete(f.ref);
      if (f.type === 'error') {
        const e = new Error(f.message);
        e.code = f.code;
        reject(e);
      } else {
        resolve(f);
      }
      return;
    }
    switch (f.type) {
      case 'welcome': return onWelcome(f);
      case 'pong': if (f.ref === 'init') S.haveAll = true; return;
      case 'subscribed': return onSubscribed(f);
      case 'unsubscribed': return onUnsubscribed(f);
      case 'message': return onMessage(f);
      case 'ack': return onAck(f);
      case 'error': return onError(f);
      case 'typing': return onTyping(f);
      case 'notification': return onNotification(f);
      default: return undefined; // synced, reconnect (handled at close), ...
    }
  }

  function onWelcome(f) {
    const resumed = S.useReconnect;
    S.connected = true;
    S.attempt = 0;
    S.gateway = f.gateway_id;
    S.useReconnect = true;
    if (f.reconnect_token) {
      S.session.reconnect_token = f.reconnect_token;
      store.setItem('kchat.session', JSON.stringify(S.session));
    }
    setConn('online', 'connected to ' + f.gateway_id);
    if (resumed) banner('Reconnected to ' + f.gateway_id + '.', 'ok');
    else if (!showLost()) banner(null);
    // Messages typed while offline go out now, in order, with their original ids: a
    // gateway that already stored one answers "duplicate" instead of storing it twice.
    sendNext();
    clearInterval(S.pingTimer);
    S.pingTimer = setInterval(() => send({ type: 'ping' }), PING_EVERY);
    updateComposer();
    renderInvites(f.invites || []);
    refreshRooms();
    refreshUsers();
  }

  function onSubscribed(f) {
    const r = room(f.room);
    r.mine = true;
    if (!S.subscribedHere.has(f.room)) {
      // Where this connection's stream of the room starts.
      S.subscribedHere.add(f.room);
      r.cursor = f.since_seq;
    }
    r.lastSeq = Math.max(r.lastSeq, f.last_seq || 0);
    if (!f.recovered && r.loaded) {
      S.lost.push(label(r));
      showLost();
    }
    if (r.kind === 'dm' && !r.members.length) refreshRooms();
    renderRooms();
  }

  function onUnsubscribed(f) {
    const r = S.rooms.get(f.room);
    if (!r) return;
    S.subscribedHere.delete(f.room);
    r.cursor = null;
    if (f.reason === 'kicked' || f.reason === 'banned') banner(`You were ${f.reason} from ${label(r)}.`);
    if (f.reason === 'left' || f.reason === 'kicked' || f.reason === 'banned') {
      S.rooms.delete(f.room);
      if (S.current === f.room) selectRoom(null);
      renderRooms();
    }
  }

  function onMessage(m) {
    const r = room(m.room);
    if (r.cursor !== null && m.seq <= r.cursor) return; // already shown: drop it
    r.cursor = m.seq;
    r.lastSeq = Math.max(r.lastSeq, m.seq);
    addEntry(r, m, true);
    // Removed by an admin through another gateway: the leave entry says who did it.
    if (m.kind === 'leave' && m.text && m.sender === S.session.user.id) banner(`You were ${m.text} (${label(r)}).`);
  }

  function onAck(f) {
    const p = S.pending.get(f.client_msg_id);
    if (p) {
      p.state = 'acked';
      if (p.el) setState(p.el, 'acked', 'sent');
      if (f.status === 'duplicate') {
        // Stored earlier (a resend after reconnect): the entry itself is or will be shown.
        S.pending.delete(f.client_msg_id);
        if (p.el && !p.el.dataset.seq) p.el.remove();
      }
    }
    settled(f.client_msg_id); // also when the stored message came first and took p
  }

  function onError(f) {
    const p = f.client_msg_id && S.pending.get(f.client_msg_id);
    if (p) {
      if (f.retryable && p.tries < 6) {
        p.tries++;
        // The same message again, before any later one: a rate limit says when it will
        // let it through; otherwise back off.
        const wait = f.retry_after_ms > 0 ? f.retry_after_ms : 500 * 2 ** p.tries;
        const id = f.client_msg_id;
        clearTimeout(S.retryTimer);
        S.retryTimer = setTimeout(() => { if (S.outgoing === id && S.pending.get(id) === p) send(p.frame); }, wait);
        return;
      }
      p.state = 'failed';
      settled(f.client_msg_id);
      if (p.el) {
        setState(p.el, 'failed', 'not sent: ' + f.message);
        const retry = document.createElement('button');
        retry.type = 'button';
        retry.className = 'secondary edit';
        retry.textContent = 'Retry';
        retry.onclick = () => { p.state = 'pending'; p.tries = 0; setState(p.el, 'pending', 'sending…'); retry.remove(); sendNext(); };
        p.el.querySelector('.msg-head').append(retry);
      } else {
        banner('Not sent: ' + f.message);
      }
      return;
    }
    banner('The server said: ' + f.message);
  }

  function onTyping(f) {
    if (!S.typing.has(f.room)) S.typing.set(f.room, new Map());
    S.typing.get(f.room).set(f.user_name, Date.now() + TYPING_SHOWN);
    renderTyping();
  }

  function onNotification(f) {
    const r = room(f.room);
    const what = f.reason === 'dm' ? 'Direct message' : f.reason === 'mention' ? 'Mention' : 'New message';
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = `${what} in ${label(r)}${f.preview ? ': ' + f.preview : ''}`;
    b.onclick = () => selectRoom(f.room);
    li.append(b);
    const list = $('notif-list');
    list.prepend(li);
    while (list.children.length > 20) list.lastChild.remove();
    if (document.hidden && 'Notification' in window && Notification.permission === 'granted') {
      new Notification('kchat: ' + what, { body: f.preview || label(r) });
    }
  }

  // ---- rooms, people -------------------------------------------------------------------

  async function refreshRooms() {
    let f;
    try { f = await request({ type: 'rooms' }); } catch (e) { return; }
    const mine = new Set();
    for (const info of f.mine || []) {
      const r = room(info.id);
      Object.assign(r, { name: info.name || info.id, kind: info.kind, members: info.members || [], mine: true,
        private: !!info.private, role: info.role || '' });
      r.lastSeq = Math.max(r.lastSeq, info.last_seq);
      mine.add(info.id);
      const read = readMark(info.id);
      if (read !== null && !r.unreadCounted) {
        // Since the last visit (approximate: counts every kind of entry).
        r.unread = S.current === info.id ? 0 : Math.max(r.unread, info.last_seq - read);
        r.unreadCounted = true;
      }
    }
    for (const r of S.rooms.values()) if (!mine.has(r.id) && r.cursor === null) r.mine = false;
    S.publicRooms = (f.public || []).filter((p) => !mine.has(p.id));
    const linked = linkedRoom;
    linkedRoom = null;
    if (linked && mine.has(linked)) {
      selectRoom(linked, false);
    } else if (!S.current) {
      const saved = store.getItem('kchat.current');
      if (saved && mine.has(saved)) selectRoom(saved, false);
    }
    renderRooms();
    showHeader(); // a rename seen in the list shows in the header too
    updateInviteForm();
    refreshInvites();
  }

  // ---- private rooms: my pending invitations, and inviting to a room I administer ------

  async function refreshInvites() {
    clearTimeout(S.invitesTimer);
    S.invitesTimer = setTimeout(refreshInvites, 30000);
    let f;
    // From the page's own gateway only: the others are other origins, which the gateways
    // do not open to pages (no CORS), and the list can wait for the next refresh.
    try { f = await api('GET', '/api/me/invites', null, S.session.token, gateways.slice(0, 1)); } catch (e) { return; }
    renderInvites(f.invites || []);
  }

  // renderInvites shows pending invitations (from GET /api/me/invites or the welcome).
  function renderInvites(invites) {
    const list = $('invite-list');
    list.replaceChildren();
    for (const inv of invites) {
      const li = document.createElement('li');
      li.className = 'invite';
      const name = document.createElement('span');
      name.textContent = '🔒 #' + inv.room + ' from ' + inv.invited_by;
      const accept = document.createElement('button');
      accept.type = 'button';
      accept.textContent = 'Accept';
      accept.onclick = () => answerInvite(inv.room, 'accept');
      const decline = document.createElement('button');
      decline.type = 'button';
      decline.className = 'secondary';
      decline.textContent = 'Decline';
      decline.onclick = () => answerInvite(inv.room, 'decline');
      li.append(name, accept, decline);
      list.append(li);
    }
    $('invites-h').hidden = !list.children.length;
  }

  async function answerInvite(id, answer) {
    try {
      await api('POST', '/api/me/invites/' + encodeURIComponent(id) + '/' + answer, null, S.session.token);
      if (answer === 'accept') {
        // Over this connection too, so that it follows the room at once (the accept may
        // have been served by another gateway); joining a room one is in is harmless.
        await request({ type: 'join', room: id });
        room(id).mine = true;
        selectRoom(id);
      }
    } catch (e) {
      banner('Cannot ' + answer + ' the invitation to #' + id + ': ' + e.message);
    }
    refreshRooms();
  }

  function updateInviteForm() {
    const r = S.current ? room(S.current) : null;
    // Owners outrank admins; both may invite and remove (the gateway decides the rest).
    const moderator = !!r && (r.role === 'owner' || r.role === 'admin');
    $('invite-form').hidden = !(moderator && r.private);
    $('remove-form').hidden = !(moderator && r.kind !== 'dm');
    if (window.kchatRoles) window.kchatRoles.update(r); // roles.js: members panel, settings
  }

  async function refreshUsers() {
    clearTimeout(S.usersTimer);
    S.usersTimer = setTimeout(refreshUsers, 15000);
    let f;
    try { f = await request({ type: 'users' }); } catch (e) { return; }
    const list = $('online-list');
    list.replaceChildren();
    for (const u of f.users || []) {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      const name = document.createElement('span');
      name.textContent = u.username;
      const note = document.createElement('span');
      note.className = 'muted';
      if (u.idle_seconds >= 60) note.textContent = 'idle ' + Math.round(u.idle_seconds / 60) + ' min';
      b.append(name, note);
      b.title = u.username === S.session.user.username ? 'you' : 'Send ' + u.username + ' a direct message';
      b.onclick = () => { $('dm-to').value = u.username; $('dm-text').focus(); };
      li.append(b);
      list.append(li);
    }
  }

  function readMark(id) {
    const v = localStorage.getItem(`kchat.read.${S.session.user.id}.${id}`);
    return v === null ? null : Number(v);
  }

  function markRead(r) {
    r.unread = 0;
    localStorage.setItem(`kchat.read.${S.session.user.id}.${r.id}`, String(r.lastSeq));
  }

  function renderRooms() {
    const list = $('room-list');
    list.replaceChildren();
    const mine = [...S.rooms.values()].filter((r) => r.mine).sort((a, b) => label(a).localeCompare(label(b)));
    for (const r of mine) {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.room = r.id;
      const name = document.createElement('span');
      name.textContent = label(r) + (r.private ? ' 🔒' : '');
      b.append(name);
      if (r.unread > 0) {
        const badge = document.createElement('span');
        badge.className = 'badge';
        badge.textContent = r.unread > 99 ? '99+' : String(r.unread);
        b.append(badge);
        b.setAttribute('aria-label', `${label(r)}, ${r.unread} unread`);
      }
      if (r.id === S.current) b.setAttribute('aria-current', 'true');
      b.onclick = () => selectRoom(r.id);
      li.append(b);
      list.append(li);
    }
    if (!mine.length) {
      const li = document.createElement('li');
      li.className = 'muted';
      li.textContent = 'No rooms yet: join or create one below.';
      list.append(li);
    }
    const pub = $('public-list');
    pub.replaceChildren();
    for (const p of S.publicRooms) {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.room = p.id;
      const name = document.createElement('span');
      name.textContent = '#' + p.id;
      const join = document.createElement('span');
      join.className = 'muted';
      join.textContent = 'join';
      b.append(name, join);
      b.onclick = () => joinRoom(p.id);
      li.append(b);
      pub.append(li);
    }
    const unread = mine.reduce((n, r) => n + r.unread, 0);
    document.title = (unread ? `(${unread}) ` : '') + (S.current ? label(room(S.current)) + ' – ' : '') + 'kchat';
  }

  async function joinRoom(id) {
    id = id.replace(/^#/, ''); // '#general' names the room general; spaces are refused below
    if (!/^[a-z0-9][a-z0-9_-]{1,63}$/.test(id)) {
      banner('A room id is 2–64 of a–z, 0–9, _ and -, starting with a letter or digit.');
      return false;
    }
    try {
      await request({ type: 'join', room: id });
    } catch (e) {
      if (e.code !== 'not_found') { banner('Cannot join #' + id + ': ' + e.message); return false; }
      try {
        await api('POST', '/api/rooms', { id, private: $('join-private').checked }, S.session.token);
      } catch (e2) {
        if (e2.code !== 'conflict') { banner('Cannot create #' + id + ': ' + e2.message); return false; }
      }
      // Join over this connection too, so that it follows the room at once (the create
      // may have been served by another gateway). Joining a room one is in is harmless.
      try { await request({ type: 'join', room: id }); } catch (e3) { banner('Cannot join #' + id + ': ' + e3.message); return false; }
    }
    room(id).mine = true;
    selectRoom(id);
    refreshRooms();
    return true;
  }

  // ---- the message pane ----------------------------------------------------------------

  function selectRoom(id, focus = true) {
    if (S.current !== id && window.kchatThreads) window.kchatThreads.close();
    S.current = id;
    S.editing = null;
    $('edit-note').hidden = true;
    $('message-list').replaceChildren();
    $('typing').textContent = '';
    if (id) store.setItem('kchat.current', id);
    const r = id ? room(id) : null;
    showHeader();
    $('empty-hint').hidden = !!r;
    $('load-older').hidden = true;
    $('history-start').hidden = true;
    if (r) {
      for (const m of [...r.msgs.values()].sort((a, b) => a.seq - b.seq)) {
        if (!m.thread_root) $('message-list').append(entryElement(r, m)); // replies: in their thread
      }
      for (const p of S.pending.values()) if (p.room === id && p.el) $('message-list').append(p.el);
      markRead(r);
      if (!r.loaded) loadHistory(r, null);
      else updateOlder(r);
      scrollToBottom();
    }
    $('sidebar').classList.remove('open');
    $('nav-toggle').setAttribute('aria-expanded', 'false');
    updateComposer();
    renderRooms();
    updateInviteForm();
    if (r && window.kchatRoles) window.kchatRoles.shown(r); // reads the room's details
    if (focus && r) $('composer-text').focus();
  }

  // showHeader puts the open room's name and topic in the top bar.
  function showHeader() {
    const r = S.current ? room(S.current) : null;
    $('room-title').textContent = r ? label(r) + (r.private ? ' 🔒' : '') : 'kchat';
    $('room-topic').textContent = r ? r.topic : '';
    $('room-topic').hidden = !(r && r.topic);
  }

  // updateComposer enables the message box in an open room, unless its owner or an admin
  // muted the user there (GET /api/rooms/{id} or a live room_change entry says so).
  function updateComposer() {
    const on = !!S.current;
    const muted = on && room(S.current).muted;
    $('composer-text').disabled = !on || muted;
    $('send-btn').disabled = !on || muted;
    $('muted-note').hidden = !muted;
    // The thread panel belongs to the open room: a muted member may not reply there either.
    $('thread-text').disabled = muted;
    $('thread-send').disabled = muted;
    $('composer-text').placeholder = muted ? 'You are muted in this room'
      : on ? `Message ${label(room(S.current))} (Enter sends, Shift+Enter adds a line)` : 'Pick a room first';
  }

  function updateOlder(r) {
    const older = r.hasMore && r.msgs.size > 0 && r.minSeq > 1;
    $('load-older').hidden = !older;
    $('history-start').hidden = older || !r.loaded;
  }

  // loadHistory reads one page: the newest (before = null) or the one before a seq.
  async function loadHistory(r, before) {
    if (r.loading) return;
    r.loading = true;
    const frame = { type: 'history', room: r.id, limit: pageSize };
    if (before !== null) frame.before_seq = before;
    let readOn = false;
    try {
      const f = await request(frame);
      const sc = $('scroller');
      const fromBottom = sc.scrollHeight - sc.scrollTop;
      const lines = $('message-list').childElementCount;
      for (const m of f.messages || []) {
        addEntry(r, m, false);
        // The next older page starts below the oldest entry read, shown or not: edits,
        // reactions and replies have no line of their own in the room.
        r.minSeq = r.minSeq === null ? m.seq : Math.min(r.minSeq, m.seq);
      }
      r.hasMore = !!f.has_more;
      r.loaded = true;
      if (S.current === r.id) {
        updateOlder(r);
        // Keep what the reader was looking at in place when older entries go above it.
        if (before !== null) sc.scrollTop = sc.scrollHeight - fromBottom;
        else scrollToBottom();
        // A page that added no line would leave an empty pane and a button: read on.
        readOn = r.hasMore && r.minSeq > 1 && $('message-list').childElementCount === lines;
      }
    } catch (e) {
      if (S.current === r.id) $('load-older').hidden = false;
    } finally {
      r.loading = false;
    }
    if (readOn) loadHistory(r, r.minSeq);
  }

  function nearBottom() {
    const sc = $('scroller');
    return sc.scrollHeight - sc.scrollTop - sc.clientHeight < 80;
  }

  function scrollToBottom() {
    const sc = $('scroller');
    sc.scrollTop = sc.scrollHeight;
  }

  // addEntry records a timeline entry (live or from history) and shows it if its room is
  // open. Edits, deletes and reactions change their target instead of adding a line.
  function addEntry(r, m, live) {
    if (m.kind === 'reaction') {
      // History pages carry each message's current reactions already, so only toggles
      // delivered live (in seq order) are applied to them.
      const t = live && r.msgs.get(m.target_seq);
      if (t) {
        applyReaction(t, m);
        const el = S.current === r.id && document.querySelector(`#message-list li[data-seq="${m.target_seq}"]`);
        if (el) el.replaceWith(entryElement(r, t));
      }
      return;
    }
    if (m.kind === 'edit' || m.kind === 'delete') {
      const t = r.msgs.get(m.target_seq);
      if (t) {
        if (m.kind === 'edit') { t.text = m.text; t.edited_at = m.sent_at; } else { t.deleted_at = m.sent_at; }
        const el = S.current === r.id && document.querySelector(`#message-list li[data-seq="${m.target_seq}"]`);
        if (el) el.replaceWith(entryElement(r, t));
        if (t.thread_root && live && window.kchatThreads) window.kchatThreads.changed(r, t, m.kind === 'delete');
      }
      return;
    }
    if (r.msgs.has(m.seq)) return;
    // A change of role, mute, owner or settings (roles.js): applied to the page's state
    // when live; history shows it only (the room's details were read after it).
    if (m.kind === 'room_change' && live && window.kchatRoles) window.kchatRoles.apply(r, m);
    if ((m.kind === 'join' || m.kind === 'leave') && live && window.kchatRoles) window.kchatRoles.membersChanged(r);
    if (m.thread_root) {
      // A reply: kept with the room's entries, shown in its thread (threads.js), counted
      // under its root.
      r.msgs.set(m.seq, m);
      r.lastSeq = Math.max(r.lastSeq, m.seq);
      const own = m.sender === S.session.user.id;
      if (own && m.client_msg_id) { S.pending.delete(m.client_msg_id); settled(m.client_msg_id); }
      if (live && !own && (S.current !== r.id || document.hidden)) { r.unread++; renderRooms(); } else if (live) markRead(r);
      if (window.kchatThreads) window.kchatThreads.onReply(r, m, live);
      return;
    }
    r.msgs.set(m.seq, m);
    r.minSeq = r.minSeq === null ? m.seq : Math.min(r.minSeq, m.seq);
    r.lastSeq = Math.max(r.lastSeq, m.seq);
    const me = S.session.user;
    const own = m.sender === me.id;
    let p = null;
    if (own && m.client_msg_id) {
      p = S.pending.get(m.client_msg_id);
      if (p) S.pending.delete(m.client_msg_id);
      settled(m.client_msg_id);
    }
    if (S.current !== r.id) {
      if (p && p.el) p.el.remove();
      if (live && !own && m.kind === 'message') { r.unread++; renderRooms(); }
      return;
    }
    const stick = nearBottom();
    const el = entryElement(r, m);
    if (p && p.el) p.el.remove();
    insertBySeq(el, m.seq);
    if (live) {
      if (document.hidden && !own && m.kind === 'message') { r.unread++; renderRooms(); } else markRead(r);
      if (!own && m.kind === 'message') $('announcer').textContent = `${m.sender_name}: ${m.text}`;
      if (stick || own) scrollToBottom();
    }
  }

  // applyReaction applies a live toggle to a message's reactions. Names are handled as a
  // set, so a toggle the history page already counted (it was read after the toggle was
  // stored) changes nothing; past the names history gives, counts are adjusted instead.
  function applyReaction(t, m) {
    t.reactions = t.reactions || [];
    let x = t.reactions.find((x) => x.emoji === m.emoji);
    if (!x) {
      if (!m.on) return;
      x = { emoji: m.emoji, count: 0, me: false, users: [] };
      t.reactions.push(x);
    }
    const mine = m.sender === S.session.user.id;
    if (x.users) {
      const had = x.users.includes(m.sender_name);
      if (m.on && !had) x.users.push(m.sender_name);
      if (!m.on && had) x.users = x.users.filter((n) => n !== m.sender_name);
      x.count = x.users.length;
    } else {
      x.count = Math.max(0, x.count + (m.on ? 1 : -1));
    }
    if (mine) x.me = !!m.on;
    if (x.count === 0) t.reactions = t.reactions.filter((y) => y !== x);
  }

  const quickEmoji = ['👍', '❤️', '😂', '🎉', '😮', '👀'];

  function react(r, m, emoji, on) {
    send({ type: 'react', room: r.id, client_msg_id: newID(), target_seq: m.seq, emoji, on });
  }

  // reactionsElement: a chip per emoji (click toggles mine) and a "+" opening a picker.
  function reactionsElement(r, m) {
    const box = document.createElement('div');
    box.className = 'reactions';
    for (const x of m.reactions || []) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'chip' + (x.me ? ' mine' : '');
      b.textContent = `${x.emoji} ${x.count}`;
      b.title = x.users && x.users.length ? x.users.join(', ') : `${x.count} reactions`;
      b.setAttribute('aria-pressed', x.me ? 'true' : 'false');
      b.onclick = () => react(r, m, x.emoji, !x.me);
      box.append(b);
    }
    const add = document.createElement('button');
    add.type = 'button';
    add.className = 'chip add';
    add.textContent = '+';
    add.title = 'Add a reaction';
    add.setAttribute('aria-label', 'Add a reaction');
    const picker = document.createElement('span');
    picker.className = 'picker';
    picker.hidden = true;
    for (const e of quickEmoji) {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'chip';
      b.textContent = e;
      b.onclick = () => {
        picker.hidden = true;
        const x = (m.reactions || []).find((y) => y.emoji === e);
        react(r, m, e, !(x && x.me));
      };
      picker.append(b);
    }
    add.onclick = () => { picker.hidden = !picker.hidden; };
    box.append(add, picker);
    return box;
  }

  function insertBySeq(el, seq) {
    const list = $('message-list');
    // Entries with a seq are in seq order; unsent ones (no seq) stay below them all.
    let before = null;
    for (let c = list.lastElementChild; c; c = c.previousElementSibling) {
      if (!c.dataset.seq) { before = c; continue; }
      if (Number(c.dataset.seq) < seq) break;
      before = c;
    }
    list.insertBefore(el, before);
  }

  function fmtTime(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return '';
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
      : d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
  }

  function setState(el, state, text) {
    el.dataset.state = state;
    const s = el.querySelector('.state');
    if (s) s.textContent = text;
  }

  function entryElement(r, m) {
    const li = document.createElement('li');
    li.dataset.seq = String(m.seq);
    li.dataset.kind = m.kind;
    const own = m.sender === S.session.user.id;
    if (m.kind === 'join' || m.kind === 'leave' || m.kind === 'room_change') {
      li.className = 'system';
      const t = document.createElement('time');
      t.dateTime = m.sent_at;
      t.textContent = fmtTime(m.sent_at) + ' ';
      const text = document.createElement('span');
      text.className = 'text';
      text.textContent = m.kind === 'room_change'
        ? (window.kchatRoles ? window.kchatRoles.describeRoomChange(m, S.session.user) : `${m.sender_name} changed the room`)
        : `${m.sender_name} ${m.kind === 'join' ? 'joined' : 'left'}` + (m.text ? ` (${m.text})` : '');
      li.append(t, text);
      return li;
    }
    if (own) {
      li.classList.add('own');
      li.dataset.state = 'stored';
    }
    const head = document.createElement('div');
    head.className = 'msg-head';
    const who = document.createElement('span');
    who.className = 'sender';
    who.textContent = m.sender_name;
    const t = document.createElement('time');
    t.dateTime = m.sent_at;
    t.title = new Date(m.sent_at).toLocaleString();
    t.textContent = fmtTime(m.sent_at);
    head.append(who, t);
    if (m.edited_at && !m.deleted_at) {
      const e = document.createElement('span');
      e.className = 'mark';
      e.textContent = '(edited)';
      e.title = 'edited ' + new Date(m.edited_at).toLocaleString();
      head.append(e);
    }
    if (own) {
      const st = document.createElement('span');
      st.className = 'state';
      st.textContent = '✓ stored';
      head.append(st);
      if (!m.deleted_at) {
        const eb = document.createElement('button');
        eb.type = 'button';
        eb.className = 'secondary edit';
        eb.textContent = 'Edit';
        eb.setAttribute('aria-label', 'Edit this message');
        eb.onclick = () => startEdit(r, m);
        head.append(eb);
      }
    }
    const text = document.createElement('div');
    text.className = 'text';
    if (m.deleted_at) {
      li.classList.add('deleted');
      text.textContent = 'message deleted';
    } else {
      text.textContent = m.text; // never innerHTML: user text is shown, not interpreted
    }
    li.append(head, text);
    if (!m.deleted_at && m.attachments && window.kchatAttach) li.append(window.kchatAttach.element(m.attachments));
    if (!m.deleted_at) li.append(reactionsElement(r, m));
    // A root's thread link (threads.js); a deleted root keeps it while it has replies.
    const hasReplies = m.thread && m.thread.reply_count > 0;
    if (m.kind === 'message' && !m.thread_root && (!m.deleted_at || hasReplies) && window.kchatThreads) {
      li.append(window.kchatThreads.summaryElement(r, m));
    }
    return li;
  }

  // rerender shows an entry of the open room again after it changed.
  function rerender(r, m) {
    const el = S.current === r.id && document.querySelector(`#message-list li[data-seq="${m.seq}"]`);
    if (el) el.replaceWith(entryElement(r, m));
  }

  // sendReply sends a reply in root's thread; like an edit it has no pending line: it
  // appears in the thread when it is stored, and a refusal is shown in the banner.
  function sendReply(roomID, root, text) {
    const id = newID();
    const frame = { type: 'send', room: roomID, client_msg_id: id, text, thread_root: root };
    S.pending.set(id, { room: roomID, frame, el: null, state: 'pending', tries: 0 });
    sendNext();
  }

  // The part of this file threads.js uses.
  window.kchatApp = { request, send, room, entryElement, rerender, sendReply, fmtTime, user: () => S.session.user,
    // for roles.js
    rest: (method, path, body) => api(method, path, body, S.session.token), banner, label, joinRoom, selectRoom,
    current: () => S.current, roomChanged };

  // roomChanged shows a room's new role, mute or settings wherever the page shows them.
  function roomChanged(r) {
    renderRooms();
    if (S.current !== r.id) return;
    showHeader();
    updateComposer();
    updateInviteForm();
  }

  function pendingElement(text) {
    const li = document.createElement('li');
    li.className = 'own';
    li.dataset.state = 'pending';
    const head = document.createElement('div');
    head.className = 'msg-head';
    const who = document.createElement('span');
    who.className = 'sender';
    who.textContent = S.session.user.username;
    const st = document.createElement('span');
    st.className = 'state';
    st.textContent = 'sending…';
    head.append(who, st);
    const body = document.createElement('div');
    body.className = 'text';
    body.textContent = text;
    li.append(head, body);
    return li;
  }

  function startEdit(r, m) {
    S.editing = { room: r.id, seq: m.seq };
    $('edit-note').hidden = false;
    const ta = $('composer-text');
    ta.value = m.text;
    ta.focus();
  }

  function cancelEdit() {
    S.editing = null;
    $('edit-note').hidden = true;
    $('composer-text').value = '';
  }

  function sendMessage(text) {
    const id = newID();
    if (S.editing && S.editing.room === S.current) {
      const frame = { type: 'edit', room: S.current, client_msg_id: id, target_seq: S.editing.seq, text };
      S.pending.set(id, { room: S.current, frame, el: null, state: 'pending', tries: 0 });
      sendNext();
      cancelEdit();
      return;
    }
    const frame = { type: 'send', room: S.current, client_msg_id: id, text, ref: 's' + id };
    const files = window.kchatAttach ? window.kchatAttach.take(S.current) : []; // attach.js
    if (files.length) frame.attachments = files;
    const el = pendingElement(text);
    el.dataset.clientMsgId = id;
    S.pending.set(id, { room: S.current, frame, el, state: 'pending', tries: 0 });
    $('message-list').append(el);
    scrollToBottom();
    sendNext(); // after the messages before it; if offline, after the next welcome
  }

  function renderTyping() {
    const now = Date.now();
    const m = S.typing.get(S.current);
    const names = [];
    if (m) for (const [name, until] of m) { if (until > now) names.push(name); else m.delete(name); }
    $('typing').textContent = !names.length ? '' : names.length === 1 ? `${names[0]} is typing…` : `${names.join(', ')} are typing…`;
  }

  // ---- wiring --------------------------------------------------------------------------

  // ---- search --------------------------------------------------------------------------

  // Results of GET /api/search. A hit's snippet is a list of pieces of the stored text:
  // each goes on the page with textContent (matches inside <mark>), so nothing a message
  // says is ever read as markup.
  const SR = { q: '', room: '', cursor: '' };

  async function runSearch(more) {
    const status = $('search-status');
    if (!more) {
      SR.q = $('search-q').value;
      SR.room = $('search-here').checked && S.current ? S.current : '';
      SR.cursor = '';
      $('search-list').replaceChildren();
    }
    $('search-more').hidden = true;
    if (!SR.q) { status.textContent = 'Type the words to search for.'; return; }
    const p = new URLSearchParams({ q: SR.q });
    if (SR.room) p.set('room', SR.room);
    if (SR.cursor) p.set('cursor', SR.cursor);
    status.textContent = 'Searching…';
    let page;
    try {
      page = await api('GET', '/api/search?' + p.toString(), null, S.session.token);
    } catch (e) {
      status.textContent = 'Search failed: ' + e.message;
      return;
    }
    for (const h of page.hits || []) $('search-list').append(hitElement(h));
    const n = $('search-list').children.length;
    status.textContent = n === 0 ? 'No messages found.'
      : `${n} message${n === 1 ? '' : 's'} found${page.capped ? ' (ranked among the newest 5000 matches)' : ''}.`;
    SR.cursor = page.next_cursor || '';
    $('search-more').hidden = !SR.cursor;
  }

  function hitElement(h) {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'hit';
    const head = document.createElement('span');
    head.className = 'muted';
    head.textContent = `${label(room(h.room))} · ${h.sender_name} · ${fmtTime(h.sent_at)}`;
    const text = document.createElement('span');
    text.className = 'snippet';
    for (const seg of h.snippet || []) {
      if (seg.match) {
        const m = document.createElement('mark');
        m.textContent = seg.text;
        text.append(m);
      } else {
        text.append(document.createTextNode(seg.text));
      }
    }
    b.append(head, text);
    b.onclick = () => openHit(h);
    li.append(b);
    return li;
  }

  // openHit opens the hit's room; if the message is on the page (it is recent enough to
  // be in the loaded history), it is scrolled into view and marked.
  function openHit(h) {
    selectRoom(h.room);
    const el = document.querySelector(`#message-list li[data-seq="${Number(h.seq)}"]`);
    if (el) {
      el.scrollIntoView({ block: 'center' });
      el.classList.add('found');
    }
  }

  function init() {
    $('login-form').addEventListener('submit', onLogin);
    $('logout').addEventListener('click', () => logout(''));
    $('join-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (await joinRoom($('join-room').value)) $('join-room').value = '';
    });
    $('remove-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const ban = ev.submitter && ev.submitter.value === 'ban';
      const who = $('remove-user').value.replace(/^@/, '');
      if (!who || !S.current) return;
      const path = '/api/rooms/' + encodeURIComponent(S.current) + (ban ? '/bans' : '/kick');
      try {
        const res = await api('POST', path, { username: who }, S.session.token);
        $('remove-user').value = '';
        const done = ban ? 'Banned ' + who : res.kicked ? 'Kicked ' + who : who + ' is not in the room';
        banner(done + ' (' + label(room(S.current)) + ')', 'ok');
      } catch (e) {
        banner('Cannot ' + (ban ? 'ban ' : 'kick ') + who + ': ' + e.message);
      }
    });
    $('invite-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const who = $('invite-user').value.replace(/^@/, '');
      if (!who || !S.current) return;
      try {
        await api('POST', '/api/rooms/' + encodeURIComponent(S.current) + '/invites', { username: who }, S.session.token);
        $('invite-user').value = '';
        banner('Invited ' + who + ' to ' + label(room(S.current)), 'ok');
      } catch (e) {
        banner('Cannot invite ' + who + ': ' + e.message);
      }
    });
    $('search-form').addEventListener('submit', (ev) => { ev.preventDefault(); runSearch(false); });
    $('search-more').addEventListener('click', () => runSearch(true));
    $('dm-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const to = $('dm-to').value.replace(/^@/, '');
      const text = $('dm-text').value;
      if (!to || !text.trim()) return;
      const id = newID();
      const frame = { type: 'dm', to, client_msg_id: id, text };
      request(frame).then((ack) => {
        $('dm-text').value = '';
        const r = room(ack.room);
        r.mine = true;
        if (!r.members.length) r.members = [S.session.user.username, to];
        selectRoom(ack.room);
        refreshRooms();
      }, (e) => banner('Direct message not sent: ' + e.message));
    });
    $('composer').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const ta = $('composer-text');
      const text = ta.value;
      if (!text.trim() || !S.current) return;
      ta.value = '';
      sendMessage(text);
      ta.focus();
    });
    $('composer-text').addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        $('composer').requestSubmit();
      } else if (ev.key === 'Escape' && S.editing) {
        cancelEdit();
      }
    });
    $('composer-text').addEventListener('input', () => {
      const now = Date.now();
      if (S.current && S.connected && now - S.lastTyping > TYPING_EVERY) {
        S.lastTyping = now;
        send({ type: 'typing', room: S.current });
      }
    });
    $('load-older').addEventListener('click', () => {
      const r = S.current && room(S.current);
      if (r) loadHistory(r, r.minSeq);
    });
    $('scroller').addEventListener('scroll', () => {
      const r = S.current && room(S.current);
      if (r && r.loaded && r.hasMore && r.minSeq > 1 && $('scroller').scrollTop < 40) loadHistory(r, r.minSeq);
    });
    $('nav-toggle').addEventListener('click', () => {
      const open = $('sidebar').classList.toggle('open');
      $('nav-toggle').setAttribute('aria-expanded', String(open));
      if (open) { const first = $('sidebar').querySelector('button, input'); if (first) first.focus(); }
    });
    document.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && $('sidebar').classList.contains('open')) {
        $('sidebar').classList.remove('open');
        $('nav-toggle').setAttribute('aria-expanded', 'false');
        $('nav-toggle').focus();
      }
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && S.current) { markRead(room(S.current)); renderRooms(); }
    });
    if ('Notification' in window && Notification.permission === 'default') {
      $('notif-enable').hidden = false;
      $('notif-enable').addEventListener('click', () => Notification.requestPermission().then(() => { $('notif-enable').hidden = true; }));
    }
    setInterval(renderTyping, 1000);
    window.addEventListener('online', () => { if (S.session && !S.connected) { S.attempt = 0; connect(); } });

    const saved = store.getItem('kchat.session');
    if (saved) {
      try {
        startSession(JSON.parse(saved));
        return;
      } catch (e) {
        store.removeItem('kchat.session');
      }
    }
    showLogin('');
  }

  init();
})();
