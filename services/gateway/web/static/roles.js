// Room roles for the page (docs/protocol.md, "Roles and muting"): owner > admin > member,
// and a muted state. Owners and admins get a panel with the room's members (role, muted)
// and the actions their rank allows, and a form for the room's name, topic and privacy;
// everyone gets the room directory. Timeline entries of kind room_change are described
// here (describeRoomChange, a pure function the browser test checks case by case) and,
// when they arrive live, applied to the page's state: the user's own role and mute, the
// room's name, topic and privacy. Kept apart from app.js; it uses the small interface
// app.js publishes as window.kchatApp.
//
// What the user types is sent as typed: the server refuses what it cannot take, and its
// message is shown in the banner. Text from the server goes on the page with textContent.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const app = () => window.kchatApp;
  const enc = encodeURIComponent;
  const RANK = { owner: 3, admin: 2, member: 1 };
  const rank = (role) => RANK[role] || 0;
  // ?dirpage=N sets the directory's page size (tests use a small one to page).
  const dirPage = Math.min(100, Math.max(1, parseInt(new URLSearchParams(location.search).get('dirpage') || '20', 10) || 20));

  const R = {
    room: null, // the room the panel shows
    members: [],
    membersReq: 0,
    transfer: null, // {room, username} awaiting confirmation
    membersTimer: null,
  };
  const D = { q: '', cursor: '' }; // the directory search

  // ---- room_change entries ---------------------------------------------------------------

  function withArticle(role) {
    if (role === 'admin') return 'an admin';
    if (role === 'owner') return 'the owner';
    if (role === 'member') return 'a member';
    return role ? 'a ' + role : 'a member';
  }

  function joinParts(parts) {
    if (parts.length < 2) return parts.join('');
    return parts.slice(0, -1).join(', ') + ' and ' + parts[parts.length - 1];
  }

  // describeRoomChange is the line a room_change entry shows: who did what to whom, from
  // the viewpoint of me ({id, username}): "ann made ben an admin", "You muted ben", "ann
  // renamed the room to Tea and made the room private". Pure: no page state.
  function describeRoomChange(m, me) {
    const meID = me && me.id;
    const who = meID && m.sender === meID ? 'You' : (m.sender_name || 'Someone');
    const whom = meID && m.target === meID ? 'you' : (m.target_name || 'someone');
    switch (m.change) {
      case 'role': return `${who} made ${whom} ${withArticle(m.role)}`;
      case 'muted': return `${who} muted ${whom}`;
      case 'unmuted': return `${who} unmuted ${whom}`;
      case 'owner': return `${who} transferred ownership to ${whom}`;
      case 'settings': {
        const s = m.settings || {};
        const parts = [];
        if (typeof s.name === 'string') parts.push(`renamed the room to ${s.name}`);
        if (typeof s.topic === 'string') parts.push(s.topic === '' ? 'cleared the topic' : `set the topic to ${s.topic}`);
        if (typeof s.private === 'boolean') parts.push(`made the room ${s.private ? 'private' : 'public'}`);
        return parts.length ? `${who} ${joinParts(parts)}` : `${who} changed the room's settings`;
      }
      default: return `${who} changed the room`;
    }
  }

  // apply takes a live room_change entry of room r: the user's own role and mute, and the
  // room's settings, change at once wherever the page shows them.
  function apply(r, m) {
    const me = app().user();
    r.changedMeanwhile = true;
    switch (m.change) {
      case 'role':
        if (m.target === me.id && m.role) r.role = m.role;
        break;
      case 'muted':
      case 'unmuted':
        if (m.target === me.id) r.muted = m.change === 'muted';
        break;
      case 'owner':
        // The previous owner, the sender, became an admin; the new owner is never muted.
        if (m.target === me.id) { r.role = 'owner'; r.muted = false; } else if (m.sender === me.id) r.role = 'admin';
        break;
      case 'settings': {
        const s = m.settings || {};
        const form = R.room === r.id; // the form shows the change; other fields keep what is typed
        if (typeof s.name === 'string') { r.name = s.name; if (form) $('settings-name').value = s.name; }
        if (typeof s.topic === 'string') { r.topic = s.topic; if (form) $('settings-topic').value = s.topic; }
        if (typeof s.private === 'boolean') { r.private = s.private; if (form) $('settings-private').checked = s.private; }
        break;
      }
      default:
        return;
    }
    app().roomChanged(r);
    membersChanged(r);
  }

  // membersChanged re-reads the open panel's member list after a join, leave or change
  // (once for a burst of them).
  function membersChanged(r) {
    if (R.room !== r.id || $('admin-panel').hidden) return;
    clearTimeout(R.membersTimer);
    R.membersTimer = setTimeout(() => refreshMembers(r), 200);
  }

  // ---- the room's details ----------------------------------------------------------------

  // shown reads the details of the room just opened (GET /api/rooms/{id}): its topic and
  // the user's role and mute, which the room list does not carry. Only the newest read
  // counts, and one during which a live change arrived (it may predate the change) is
  // read again. The promise settles once the details are shown.
  async function shown(r) {
    if (r.kind === 'dm') return;
    const req = r.detailsReq = (r.detailsReq || 0) + 1;
    r.changedMeanwhile = false;
    let d;
    try { d = await app().rest('GET', '/api/rooms/' + enc(r.id)); } catch (e) { return; }
    if (req !== r.detailsReq) return;
    if (r.changedMeanwhile) { await shown(r); return; }
    r.name = d.name || r.id;
    r.topic = d.topic || '';
    r.private = !!d.private;
    r.muted = !!d.muted;
    if (d.role) r.role = d.role;
    if (R.room === r.id) fillSettings(r);
    app().roomChanged(r);
  }

  // update shows the panel to the open room's owners and admins (called by app.js whenever
  // the open room or the user's role in it changes).
  function update(r) {
    const panel = $('admin-panel');
    const mod = !!r && r.kind !== 'dm' && rank(r.role) >= rank('admin');
    const wasHidden = panel.hidden;
    panel.hidden = !mod;
    if (!mod) {
      R.room = null;
      hideTransfer();
      return;
    }
    $('admin-h').textContent = 'Manage ' + app().label(r);
    if (R.room !== r.id || wasHidden) {
      R.room = r.id;
      R.members = [];
      hideTransfer();
      fillSettings(r);
      renderMembers(r);
      refreshMembers(r);
    } else {
      renderMembers(r); // the actions follow the user's rank
    }
  }

  function fillSettings(r) {
    $('settings-name').value = r.name || r.id;
    $('settings-topic').value = r.topic || '';
    $('settings-private').checked = !!r.private;
  }

  // ---- members -----------------------------------------------------------------------------

  async function refreshMembers(r) {
    const req = ++R.membersReq;
    let f;
    try {
      f = await app().rest('GET', '/api/rooms/' + enc(r.id) + '/members');
    } catch (e) {
      if (req === R.membersReq) app().banner(`Cannot list the members of ${app().label(r)}: ${e.message}`);
      return;
    }
    if (req !== R.membersReq || R.room !== r.id) return;
    R.members = f.members || [];
    // The user's own row is the freshest word on their role and mute.
    const me = R.members.find((m) => m.id === app().user().id);
    if (me && (me.role !== r.role || !!me.muted !== !!r.muted)) {
      r.role = me.role;
      r.muted = !!me.muted;
      app().roomChanged(r); // may hide the panel
    }
    if (R.room === r.id) renderMembers(r);
  }

  function button(text, aria, run, secondary = true) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = secondary ? 'secondary' : '';
    b.textContent = text;
    b.setAttribute('aria-label', aria);
    b.onclick = run;
    return b;
  }

  function renderMembers(r) {
    const list = $('member-list');
    list.replaceChildren();
    const me = app().user();
    const mine = rank(r.role);
    const sorted = [...R.members].sort((a, b) => rank(b.role) - rank(a.role) || a.username.localeCompare(b.username));
    for (const m of sorted) {
      const u = m.username;
      const li = document.createElement('li');
      li.className = 'member';
      li.dataset.user = u;
      const who = document.createElement('span');
      who.className = 'name';
      who.textContent = u + (m.id === me.id ? ' (you)' : '');
      const role = document.createElement('span');
      role.className = 'role';
      role.dataset.role = m.role;
      role.textContent = m.role;
      li.append(who, role);
      if (m.muted) {
        const mute = document.createElement('span');
        mute.className = 'muted-mark';
        mute.textContent = 'muted';
        li.append(mute);
      }
      const acts = document.createElement('div');
      acts.className = 'actions';
      const other = m.id !== me.id;
      // The gateway decides; these are the actions it would allow (roles.go: each acts
      // only on members ranked below them, roles are given by the owner).
      if (other && r.role === 'owner' && m.role === 'member') acts.append(button('Make admin', `Make ${u} an admin`, () => setRole(r, u, 'admin')));
      if (other && r.role === 'owner' && m.role === 'admin') acts.append(button('Make member', `Make ${u} a member`, () => setRole(r, u, 'member')));
      if (other && mine > rank(m.role)) {
        acts.append(m.muted ? button('Unmute', `Unmute ${u}`, () => mute(r, u, false)) : button('Mute', `Mute ${u}`, () => mute(r, u, true)));
        acts.append(button('Kick', `Kick ${u}`, () => remove(r, u, false)), button('Ban', `Ban ${u}`, () => remove(r, u, true)));
      }
      if (other && r.role === 'owner') acts.append(button('Make owner', `Transfer ownership to ${u}`, () => askTransfer(r, u)));
      if (acts.childElementCount) li.append(acts);
      list.append(li);
    }
    if (!sorted.length) {
      const li = document.createElement('li');
      li.className = 'muted';
      li.textContent = 'Loading members…';
      list.append(li);
    }
  }

  // act runs one administrative request; a refusal shows the server's message.
  async function act(what, run, done) {
    try {
      await run();
    } catch (e) {
      app().banner(`Cannot ${what}: ${e.message}`);
      return false;
    }
    if (done) app().banner(done, 'ok');
    return true;
  }

  const memberPath = (r, u) => '/api/rooms/' + enc(r.id) + '/members/' + enc(u);

  async function setRole(r, u, role) {
    await act(`make ${u} ${withArticle(role)}`, () => app().rest('POST', memberPath(r, u) + '/role', { role }),
      `${u} is now ${withArticle(role)} of ${app().label(r)}`);
    refreshMembers(r);
  }

  async function mute(r, u, on) {
    await act(`${on ? 'mute' : 'unmute'} ${u}`, () => app().rest(on ? 'POST' : 'DELETE', memberPath(r, u) + '/mute'),
      `${on ? 'Muted' : 'Unmuted'} ${u} in ${app().label(r)}`);
    refreshMembers(r);
  }

  async function remove(r, u, ban) {
    await act(`${ban ? 'ban' : 'kick'} ${u}`, () => app().rest('POST', '/api/rooms/' + enc(r.id) + (ban ? '/bans' : '/kick'), { username: u }),
      `${ban ? 'Banned' : 'Kicked'} ${u} (${app().label(r)})`);
    refreshMembers(r);
  }

  function askTransfer(r, u) {
    R.transfer = { room: r.id, username: u };
    $('transfer-text').textContent = `Transfer ownership of ${app().label(r)} to ${u}? You will become an admin.`;
    $('transfer-confirm').hidden = false;
    $('transfer-no').focus();
  }

  function hideTransfer() {
    R.transfer = null;
    $('transfer-confirm').hidden = true;
  }

  async function transfer() {
    const t = R.transfer;
    hideTransfer();
    if (!t) return;
    const r = app().room(t.room);
    const ok = await act(`transfer ownership to ${t.username}`,
      () => app().rest('POST', '/api/rooms/' + enc(r.id) + '/transfer', { username: t.username }),
      `${t.username} now owns ${app().label(r)}`);
    if (ok) {
      r.role = 'admin';
      app().roomChanged(r);
    }
    refreshMembers(r);
  }

  // saveSettings sends the fields that differ from the room's, exactly as typed.
  async function saveSettings(ev) {
    ev.preventDefault();
    const id = app().current();
    if (!id) return;
    const r = app().room(id);
    const body = {};
    const name = $('settings-name').value;
    const topic = $('settings-topic').value;
    const priv = $('settings-private').checked;
    if (name !== (r.name || r.id)) body.name = name;
    if (topic !== (r.topic || '')) body.topic = topic;
    if (priv !== !!r.private) body.private = priv;
    if (!Object.keys(body).length) {
      app().banner(`The settings of ${app().label(r)} are unchanged.`, 'ok');
      return;
    }
    let d;
    const ok = await act(`change the settings of ${app().label(r)}`, async () => {
      d = await app().rest('PATCH', '/api/rooms/' + enc(r.id), body);
    });
    if (!ok) return;
    r.name = d.name || r.id;
    r.topic = d.topic || '';
    r.private = !!d.private;
    fillSettings(r);
    app().roomChanged(r);
    app().banner(`Saved the settings of ${app().label(r)}.`, 'ok');
  }

  // ---- the directory -------------------------------------------------------------------

  async function findRooms(more) {
    const list = $('directory-list');
    const status = $('directory-status');
    if (!more) {
      D.q = $('directory-q').value; // as typed: the server refuses what it cannot search
      D.cursor = '';
      list.replaceChildren();
    }
    $('directory-more').hidden = true;
    const p = new URLSearchParams({ q: D.q, limit: String(dirPage) });
    if (D.cursor) p.set('cursor', D.cursor);
    status.textContent = 'Searching…';
    let page;
    try {
      page = await app().rest('GET', '/api/rooms/directory?' + p.toString());
    } catch (e) {
      status.textContent = '';
      app().banner('Cannot search the directory: ' + e.message);
      return;
    }
    for (const d of page.rooms || []) list.append(directoryElement(d));
    const n = list.children.length;
    status.textContent = n === 0 ? 'No public rooms found.' : `${n} room${n === 1 ? '' : 's'} shown.`;
    D.cursor = page.cursor || '';
    $('directory-more').hidden = !D.cursor;
  }

  function directoryElement(d) {
    const li = document.createElement('li');
    li.dataset.room = d.id;
    const head = document.createElement('div');
    head.className = 'dir-head';
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = '#' + (d.name && d.name !== d.id ? `${d.name} (${d.id})` : d.id);
    const count = document.createElement('span');
    count.className = 'count muted';
    count.textContent = `${d.members} member${d.members === 1 ? '' : 's'}`;
    head.append(name, count);
    li.append(head);
    if (d.topic) {
      const topic = document.createElement('div');
      topic.className = 'topic muted';
      topic.textContent = d.topic;
      li.append(topic);
    }
    const mine = app().room(d.id).mine;
    const b = button(mine ? 'Open' : 'Join', `${mine ? 'Open' : 'Join'} #${d.id}`, async () => {
      if (app().room(d.id).mine) { app().selectRoom(d.id); return; }
      if (await app().joinRoom(d.id)) {
        b.textContent = 'Open';
        b.setAttribute('aria-label', `Open #${d.id}`);
      }
    }, mine);
    li.append(b);
    return li;
  }

  function init() {
    $('settings-form').addEventListener('submit', saveSettings);
    $('transfer-yes').addEventListener('click', transfer);
    $('transfer-no').addEventListener('click', hideTransfer);
    $('directory-form').addEventListener('submit', (ev) => { ev.preventDefault(); findRooms(false); });
    $('directory-more').addEventListener('click', () => findRooms(true));
  }

  window.kchatRoles = { describeRoomChange, apply, shown, update, membersChanged };
  init();
})();
