// Browser end-to-end test of the web page, run with `node --test` by e2e_browser_test.go,
// which starts the platform and passes:
//   GW_A, GW_B     base URLs of two gateways (http://127.0.0.1:port)
//   GW_SLOW        a third gateway, whose per-connection rate limit is 20/s with a burst of 2
//   STOP_A_URL     POST here and the harness stops gateway A; it answers once A is gone
//   CHROMIUM_PATH  the browser (default /usr/bin/chromium)
//   UPDATE_SCREENSHOTS=1 also refreshes screenshots/chat.png and roles.png, the ones kept in git
// Nothing is started here and nothing is fetched from the internet.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const shots = path.join(here, 'screenshots');
const latest = path.join(shots, 'latest');
const { GW_A, GW_B, GW_SLOW, STOP_A_URL } = process.env;
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WAIT = 30_000;

// Flags from the machine notes: without the background-networking ones Chromium keeps
// trying to reach Google's hosts, which this machine's closed network refuses.
const args = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

let browser;
after(async () => { if (browser) await browser.close(); });

async function openPage(base, others, viewport, extra = '') {
  const ctx = await browser.newContext({ viewport });
  const page = await ctx.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push('page error: ' + e.message));
  page.on('console', (m) => {
    // A refused WebSocket to the stopped gateway is expected during fail-over.
    if (m.type() === 'error' && !/WebSocket|ERR_CONNECTION_REFUSED|Failed to load resource/.test(m.text())) page.problems.push('console: ' + m.text());
  });
  await page.goto(`${base}/?gateways=${encodeURIComponent([base, ...others].join(','))}&page=4${extra}`);
  return page;
}

async function register(page, name) {
  await page.getByLabel('Username', { exact: true }).fill(name);
  await page.getByLabel('Password', { exact: true }).fill('password-' + name);
  await page.getByRole('button', { name: 'Register' }).click();
  await page.locator('#conn-status[data-state="online"]').waitFor({ timeout: WAIT });
  assert.equal(await page.locator('#me').textContent(), name);
}

async function join(page, room) {
  await page.getByLabel('Join or create a room').fill(room);
  await page.getByRole('button', { name: 'Join', exact: true }).click();
  await page.locator('#room-title').filter({ hasText: '#' + room }).waitFor({ timeout: WAIT });
}

async function say(page, text) {
  const box = page.getByLabel('Message', { exact: true });
  await box.fill(text);
  await box.press('Enter'); // keyboard send
}

// texts is the pane's stored messages (not join lines, not unsent ones), in order.
const texts = (page) => page.$$eval('#message-list li[data-kind="message"] .text', (els) => els.map((e) => e.textContent));

async function waitForTexts(page, want, what) {
  try {
    await page.waitForFunction((n) => document.querySelectorAll('#message-list li[data-kind="message"]').length >= n, want.length, { timeout: WAIT });
  } catch (e) {
    assert.fail(`${what}: expected ${want.length} messages, have ${JSON.stringify(await texts(page))}`);
  }
  assert.deepEqual(await texts(page), want, what);
}

// loadAllHistory scrolls back page by page until the start of the room is reached; each
// click is followed by waiting for more entries, not for a fixed time.
async function loadAllHistory(page) {
  await page.locator('#message-list li[data-kind="message"]').first().waitFor({ timeout: WAIT });
  while (await page.locator('#load-older').isVisible()) {
    const before = await page.locator('#message-list li').count();
    await page.locator('#load-older').click();
    await page.waitForFunction((n) => document.querySelectorAll('#message-list li').length > n
      || document.getElementById('load-older').hidden, before, { timeout: WAIT });
  }
}

async function shot(page, name) {
  fs.mkdirSync(latest, { recursive: true });
  await page.screenshot({ path: path.join(latest, name) });
  if ((name === 'chat.png' || name === 'roles.png') && process.env.UPDATE_SCREENSHOTS === '1') fs.copyFileSync(path.join(latest, name), path.join(shots, name));
}

// rest calls the gateway's REST API from the page, with its session.
const rest = (page, method, path, body) => page.evaluate(async ([method, path, body]) => {
  const token = JSON.parse(sessionStorage.getItem('kchat.session')).token;
  const res = await fetch(path, { method, headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
    body: body ? JSON.stringify(body) : undefined });
  return { status: res.status, body: await res.json() };
}, [method, path, body]);

async function reloadPage(page, room) {
  await page.reload();
  await page.locator('#conn-status[data-state="online"]').waitFor({ timeout: WAIT });
  await page.locator('#room-title').filter({ hasText: '#' + room }).waitFor({ timeout: WAIT });
}

// Runs first, while both gateways are up (the next test stops A). What the other page shows
// is checked live (the room_change entries the gateways send) and after a reload (state
// from REST, history); describeRoomChange is checked case by case, and frames the test adds
// to one page's WebSocket check the live path on cases of its own choosing.
test('room roles on two gateways: the members panel, mute, topic, directory, transfer', { timeout: 180_000 }, async () => {
  assert.ok(GW_A && GW_B, 'GW_A and GW_B must be set (run through go test)');
  browser ??= await chromium.launch({ executablePath, headless: true, args });
  const suffix = Date.now().toString(36).slice(-5);
  const olga = 'olga' + suffix;
  const pete = 'pete' + suffix;
  const roomID = 'roles-' + suffix;
  const a = await openPage(GW_A, [GW_B], { width: 1100, height: 900 }, '&dirpage=2');
  const b = await openPage(GW_B, [GW_A], { width: 1100, height: 900 }, '&dirpage=2');
  await register(a, olga);
  await register(b, pete);
  await join(a, roomID); // creates it: olga owns it
  await join(b, roomID);

  // describeRoomChange, table-driven, before any server sends such entries.
  const me = { id: 'u-me', username: 'me' };
  const ann = { sender: 'u-ann', sender_name: 'ann' };
  const ben = { target: 'u-ben', target_name: 'ben' };
  const cases = [
    [{ ...ann, ...ben, change: 'role', role: 'admin' }, 'ann made ben an admin'],
    [{ ...ann, ...ben, change: 'role', role: 'member' }, 'ann made ben a member'],
    [{ ...ann, ...ben, change: 'muted' }, 'ann muted ben'],
    [{ ...ann, ...ben, change: 'unmuted' }, 'ann unmuted ben'],
    [{ ...ann, ...ben, change: 'owner', role: 'owner' }, 'ann transferred ownership to ben'],
    [{ ...ann, change: 'settings', settings: { name: 'Tea room' } }, 'ann renamed the room to Tea room'],
    [{ ...ann, change: 'settings', settings: { topic: 'scones <b>only</b>' } }, 'ann set the topic to scones <b>only</b>'],
    [{ ...ann, change: 'settings', settings: { topic: '' } }, 'ann cleared the topic'],
    [{ ...ann, change: 'settings', settings: { private: true } }, 'ann made the room private'],
    [{ ...ann, change: 'settings', settings: { private: false } }, 'ann made the room public'],
    [{ ...ann, change: 'settings', settings: { name: 'X', topic: 'y', private: true } }, 'ann renamed the room to X, set the topic to y and made the room private'],
    [{ ...ann, change: 'settings', settings: { name: 'X', private: false } }, 'ann renamed the room to X and made the room public'],
    [{ ...ann, target: 'u-me', target_name: 'me', change: 'muted' }, 'ann muted you'],
    [{ ...ann, target: 'u-me', target_name: 'me', change: 'owner', role: 'owner' }, 'ann transferred ownership to you'],
    [{ sender: 'u-me', sender_name: 'me', ...ben, change: 'role', role: 'admin' }, 'You made ben an admin'],
    [{ ...ann, change: 'something-new' }, 'ann changed the room'],
  ];
  const described = await a.evaluate(([cs, me]) => cs.map(([e]) => window.kchatRoles.describeRoomChange(
    { kind: 'room_change', room: 'r', seq: 7, sent_at: '2026-01-01T00:00:00Z', ...e }, me)), [cases, me]);
  assert.deepEqual(described, cases.map((c) => c[1]), 'describeRoomChange');
  // As a timeline line: text only, whatever the names and settings say.
  const line = await a.evaluate((room) => {
    const li = window.kchatApp.entryElement(window.kchatApp.room(room), { kind: 'room_change', room, seq: 999, sender: 'u-x',
      sender_name: '<img src=x onerror="window.__xss=3">', change: 'settings', settings: { topic: '<script>window.__xss=4</script>' },
      sent_at: new Date().toISOString() });
    document.getElementById('message-list').append(li);
    const out = { cls: li.className, text: li.querySelector('.text').textContent, elements: li.querySelectorAll('img, script').length };
    li.remove();
    return out;
  }, roomID);
  assert.deepEqual(line, { cls: 'system', text: '<img src=x onerror="window.__xss=3"> set the topic to <script>window.__xss=4</script>', elements: 0 });
  assert.equal(await a.evaluate(() => window.__xss), undefined, 'a room_change line ran markup');

  // Live entries of the test's own: pete's WebSocket is routed through the test, which adds
  // room_change message frames to what the gateway sends. His mute
  // disables the composer, the unmute enables it, settings change the header and the list;
  // each is a system line of the timeline. (Not stored: a reload forgets them.)
  let toPete = null;
  await b.routeWebSocket(/\/ws$/, (ws) => { ws.connectToServer(); toPete = ws; });
  await reloadPage(b, roomID);
  await b.evaluate((room) => window.kchatRoles.shown(window.kchatApp.room(room)), roomID); // settled
  const peteID = await b.evaluate(() => window.kchatApp.user().id);
  let fakeSeq = 1_000_000;
  const deliver = (change) => toPete.send(JSON.stringify({ type: 'message', room: roomID, seq: ++fakeSeq, kind: 'room_change',
    message_id: 'fake-' + fakeSeq, sender: 'u-olga', sender_name: olga, target: peteID, target_name: pete, sent_at: new Date().toISOString(), ...change }));
  const systemLine = (text) => b.locator('#message-list li.system[data-kind="room_change"]', { hasText: text }).waitFor({ timeout: WAIT });
  deliver({ change: 'muted' });
  await systemLine(`${olga} muted you`);
  await b.locator('#composer-text:disabled').waitFor({ timeout: WAIT });
  await b.locator('#muted-note', { hasText: 'You are muted in this room' }).waitFor({ timeout: WAIT });
  deliver({ change: 'unmuted' });
  await systemLine(`${olga} unmuted you`);
  await b.locator('#composer-text:enabled').waitFor({ timeout: WAIT });
  await b.locator('#muted-note').waitFor({ state: 'hidden', timeout: WAIT });
  deliver({ change: 'settings', target: undefined, target_name: undefined, settings: { topic: 'live <i>topic</i>', private: true } });
  await systemLine(`${olga} set the topic to live <i>topic</i> and made the room private`);
  await b.locator('#room-topic', { hasText: 'live <i>topic</i>' }).waitFor({ timeout: WAIT });
  await b.locator('#room-title', { hasText: '🔒' }).waitFor({ timeout: WAIT });
  await b.locator('#room-list button', { hasText: '#' + roomID + ' 🔒' }).waitFor({ timeout: WAIT });
  assert.equal(await b.locator('#message-list i, #room-topic i').count(), 0, 'live settings became markup');
  await reloadPage(b, roomID); // back to the server's state
  await b.locator('#room-topic').waitFor({ state: 'hidden', timeout: WAIT });
  assert.equal(await b.locator('#message-list li[data-kind="room_change"]').count(), 0);

  // The owner's members panel; a member has none.
  const row = (p, u) => p.locator('#member-list li', { hasText: u });
  await row(a, olga).locator('.role', { hasText: 'owner' }).waitFor({ timeout: WAIT });
  await row(a, pete).locator('.role', { hasText: 'member' }).waitFor({ timeout: WAIT });
  assert.equal(await b.locator('#admin-panel').isVisible(), false, 'a member sees the admin panel');
  const change = (p, text) => p.locator('#message-list li.system[data-kind="room_change"]', { hasText: text }).waitFor({ timeout: WAIT });
  await a.getByRole('button', { name: `Make ${pete} an admin` }).click();
  await row(a, pete).locator('.role', { hasText: 'admin' }).waitFor({ timeout: WAIT });
  // Live on both pages: the line, and pete's panel appears.
  await change(a, `You made ${pete} an admin`);
  await change(b, `${olga} made you an admin`);
  await b.locator('#admin-panel').waitFor({ timeout: WAIT });
  await a.getByRole('button', { name: `Mute ${pete}`, exact: true }).click();
  await row(a, pete).locator('.muted-mark', { hasText: 'muted' }).waitFor({ timeout: WAIT });
  await a.getByRole('button', { name: `Unmute ${pete}` }).waitFor({ timeout: WAIT });
  await change(b, `${olga} muted you`);
  await b.locator('#composer-text:disabled').waitFor({ timeout: WAIT });
  // pete, after a reload: an admin (the panel, no action on the owner), muted; history
  // has the changes.
  await reloadPage(b, roomID);
  await change(b, `${olga} made you an admin`);
  await change(b, `${olga} muted you`);
  await b.locator('#muted-note', { hasText: 'You are muted in this room' }).waitFor({ timeout: WAIT });
  await b.locator('#composer-text:disabled').waitFor({ timeout: WAIT });
  await row(b, pete + ' (you)').locator('.role', { hasText: 'admin' }).waitFor({ timeout: WAIT });
  await row(b, olga).locator('.role', { hasText: 'owner' }).waitFor({ timeout: WAIT });
  assert.equal(await row(b, olga).getByRole('button').count(), 0, 'an admin is offered actions on the owner');
  await a.getByRole('button', { name: `Unmute ${pete}` }).click();
  await a.getByRole('button', { name: `Mute ${pete}`, exact: true }).waitFor({ timeout: WAIT });
  assert.equal(await row(a, pete).locator('.muted-mark').count(), 0);
  await change(b, `${olga} unmuted you`);
  await b.locator('#composer-text:enabled').waitFor({ timeout: WAIT });
  await reloadPage(b, roomID);
  await row(b, olga).waitFor({ timeout: WAIT });
  await b.evaluate((room) => window.kchatRoles.shown(window.kchatApp.room(room)), roomID); // the details are read
  await b.locator('#composer-text:enabled').waitFor({ timeout: WAIT });
  assert.equal(await b.locator('#muted-note').isVisible(), false);

  // Settings: a refusal shows the server's message; what is typed is stored as typed.
  await a.getByLabel('Room name').fill('   ');
  await a.locator('#settings-form').getByRole('button', { name: 'Save settings' }).click();
  await a.locator('#banner-text', { hasText: 'name: must not be empty' }).waitFor({ timeout: WAIT });
  await a.getByLabel('Room name').fill(roomID); // unchanged: not sent
  const topic = '  Tea & <b>scones</b> ' + suffix + ' ';
  await a.getByLabel('Topic', { exact: true }).fill(topic);
  await a.locator('#settings-form').getByRole('button', { name: 'Save settings' }).click();
  await a.locator('#banner-text', { hasText: 'Saved the settings' }).waitFor({ timeout: WAIT });
  await a.locator('#room-topic', { hasText: 'Tea & <b>scones</b>' }).waitFor({ timeout: WAIT });
  const details = await rest(a, 'GET', '/api/rooms/' + roomID);
  assert.equal(details.body.topic, topic, 'the topic as typed');
  assert.equal(details.body.name, roomID);
  await change(a, 'You set the topic to');
  await shot(a, 'roles.png');
  await change(b, `${olga} set the topic to`);
  await b.locator('#room-topic', { hasText: 'Tea & <b>scones</b> ' + suffix }).waitFor({ timeout: WAIT });
  await reloadPage(b, roomID);
  await b.locator('#room-topic', { hasText: 'Tea & <b>scones</b> ' + suffix }).waitFor({ timeout: WAIT });
  assert.equal(await b.locator('#room-topic b, .topbar b').count(), 0, 'the topic became markup');

  // The directory: public rooms by name or topic, paged (2 a page here), with counts.
  for (const n of [1, 2, 3]) assert.equal((await rest(a, 'POST', '/api/rooms', { id: `dir-${suffix}-${n}` })).status, 201);
  assert.equal((await rest(a, 'PATCH', `/api/rooms/dir-${suffix}-2`, { topic: 'board games ' + suffix })).status, 200);
  assert.equal((await rest(a, 'POST', '/api/rooms', { id: `dir-${suffix}-4`, private: true })).status, 201);
  const find = async (q) => {
    await b.getByLabel('Search public rooms').fill(q);
    await b.locator('#directory-form').getByRole('button', { name: 'Find' }).click();
  };
  const dir = b.locator('#directory-list li');
  await find('board games ' + suffix);
  await b.locator('#directory-status', { hasText: '1 room shown' }).waitFor({ timeout: WAIT });
  await dir.filter({ hasText: `#dir-${suffix}-2` }).filter({ hasText: 'board games ' + suffix }).waitFor({ timeout: WAIT });
  await find('dir-' + suffix);
  await b.locator('#directory-status', { hasText: '2 rooms shown' }).waitFor({ timeout: WAIT });
  await b.getByRole('button', { name: 'More rooms' }).click();
  await b.locator('#directory-status', { hasText: '3 rooms shown' }).waitFor({ timeout: WAIT });
  await b.getByRole('button', { name: 'More rooms' }).waitFor({ state: 'hidden', timeout: WAIT });
  assert.deepEqual(await b.$$eval('#directory-list li .name', (els) => els.map((e) => e.textContent)),
    [1, 2, 3].map((n) => `#dir-${suffix}-${n}`), 'the private room is not listed');
  assert.deepEqual(await b.$$eval('#directory-list li .count', (els) => els.map((e) => e.textContent)), ['1 member', '1 member', '1 member']);
  await b.getByRole('button', { name: `Join #dir-${suffix}-3` }).click();
  await b.locator('#room-title').filter({ hasText: `#dir-${suffix}-3` }).waitFor({ timeout: WAIT });
  await b.getByRole('button', { name: `Open #dir-${suffix}-3` }).waitFor({ timeout: WAIT });
  await b.locator('#room-list button', { hasText: `#dir-${suffix}-3` }).waitFor({ timeout: WAIT });
  await find(`dir-${suffix}-3`);
  await dir.filter({ hasText: `#dir-${suffix}-3` }).filter({ hasText: '2 members' }).waitFor({ timeout: WAIT });
  await b.locator('#room-list button', { hasText: '#' + roomID }).first().click();

  // Transfer, confirmed first: olga becomes an admin, pete the owner (after his reload).
  await a.getByRole('button', { name: `Transfer ownership to ${pete}` }).click();
  await a.locator('#transfer-confirm', { hasText: `Transfer ownership of #${roomID} to ${pete}?` }).waitFor({ timeout: WAIT });
  await a.locator('#transfer-confirm').getByRole('button', { name: 'Cancel' }).click();
  await a.locator('#transfer-confirm').waitFor({ state: 'hidden', timeout: WAIT });
  await a.getByRole('button', { name: `Transfer ownership to ${pete}` }).click();
  await a.locator('#transfer-confirm').getByRole('button', { name: 'Transfer ownership' }).click();
  await a.locator('#banner-text', { hasText: `${pete} now owns #${roomID}` }).waitFor({ timeout: WAIT });
  await row(a, pete).locator('.role', { hasText: 'owner' }).waitFor({ timeout: WAIT });
  await row(a, olga).locator('.role', { hasText: 'admin' }).waitFor({ timeout: WAIT });
  assert.equal(await row(a, pete).getByRole('button').count(), 0, 'an admin is offered actions on the owner');
  await change(a, `You transferred ownership to ${pete}`);
  await change(b, `${olga} transferred ownership to you`);
  await row(b, pete + ' (you)').locator('.role', { hasText: 'owner' }).waitFor({ timeout: WAIT });
  await reloadPage(b, roomID);
  await row(b, pete + ' (you)').locator('.role', { hasText: 'owner' }).waitFor({ timeout: WAIT });
  await b.getByRole('button', { name: `Transfer ownership to ${olga}` }).waitFor({ timeout: WAIT });
  await b.getByRole('button', { name: `Make ${olga} a member` }).waitFor({ timeout: WAIT });

  assert.deepEqual([...a.problems, ...b.problems], [], 'errors in the pages');
  await a.context().close();
  await b.context().close();
});

// Typing faster than the gateway's rate limit: it refuses some messages (rate_limited,
// retry_after_ms) and the page retries them. Every message must still appear once, in the
// order typed, to the sender and to a reader on another gateway. With every unacknowledged
// message on the wire at once, a refused one landed after later ones.
test('typing past the rate limit keeps the order', { timeout: 120_000 }, async () => {
  assert.ok(GW_SLOW && GW_B, 'GW_SLOW and GW_B must be set (run through go test)');
  browser ??= await chromium.launch({ executablePath, headless: true, args });
  const suffix = Date.now().toString(36).slice(-5);
  const roomID = 'burst-' + suffix;
  const fast = await openPage(GW_SLOW, [], { width: 1000, height: 700 });
  const reader = await openPage(GW_B, [], { width: 1000, height: 700 });
  let refused = 0;
  fast.on('websocket', (ws) => ws.on('framereceived', ({ payload }) => {
    if (typeof payload === 'string' && payload.includes('"rate_limited"')) refused++;
  }));
  await register(fast, 'fast' + suffix);
  await register(reader, 'read' + suffix);
  await join(fast, roomID);
  await join(reader, roomID);

  const want = Array.from({ length: 30 }, (_, i) => 'line ' + String(i + 1).padStart(2, '0'));
  // All 30 submitted in one go, as a paste of many lines or a fast typist would.
  await fast.evaluate((lines) => {
    const box = document.getElementById('composer-text');
    for (const line of lines) {
      box.value = line;
      document.getElementById('composer').requestSubmit();
    }
  }, want);
  await waitForTexts(fast, want, 'sender, typing past the limit');
  await waitForTexts(reader, want, 'reader on another gateway');
  assert.ok(refused > 0, 'the gateway refused nothing: the test did not reach the rate limit');
  assert.equal(await fast.locator('#message-list li[data-state="failed"]').count(), 0, 'a message failed');
  assert.deepEqual([...fast.problems, ...reader.problems], [], 'errors in the pages');
  await fast.context().close();
  await reader.context().close();
});

test('two people on two gateways: order, history, XSS, fail-over', { timeout: 240_000 }, async () => {
  assert.ok(GW_A && GW_B && STOP_A_URL, 'GW_A, GW_B and STOP_A_URL must be set (run through go test)');
  browser ??= await chromium.launch({ executablePath, headless: true, args });
  const suffix = Date.now().toString(36).slice(-5);
  const ann = 'ann' + suffix;
  const ben = 'ben' + suffix;
  const roomID = 'e2e-' + suffix;

  const a = await openPage(GW_A, [GW_B], { width: 1100, height: 700 });
  const b = await openPage(GW_B, [GW_A], { width: 1100, height: 700 });
  await register(a, ann);
  await register(b, ben);
  await join(a, roomID); // creates it
  await join(b, roomID);

  // Both talk; both panes show the same messages in the same order.
  const said = [];
  for (const [page, text] of [[a, 'hello from ann'], [b, 'hi ann, ben here'], [a, 'how is gateway B?'], [b, 'fine, and A?']]) {
    await say(page, text);
    said.push(text);
    await waitForTexts(page, said, 'own message shown');
  }
  // Markup is text: neither of these may run or create an element.
  const xss = ['<img src=x onerror="window.__xss=1">', '<script>window.__xss=2</script>'];
  await say(a, xss[0]);
  said.push(xss[0]);
  await waitForTexts(a, said, 'xss 1');
  await say(b, xss[1]);
  said.push(xss[1]);
  await waitForTexts(a, said, 'order on A');
  await waitForTexts(b, said, 'order on B');
  for (const p of [a, b]) {
    assert.equal(await p.evaluate(() => window.__xss), undefined, 'injected markup ran');
    assert.equal(await p.locator('#message-list img, #message-list script').count(), 0, 'injected markup became elements');
  }
  // Own messages end up stored (pending → sent → stored).
  await a.locator(`#message-list li.own[data-state="stored"]`).nth(2).waitFor({ timeout: WAIT });
  assert.equal(await a.locator('#message-list li[data-state="pending"], #message-list li[data-state="acked"]').count(), 0);

  // Editing one's own message: both panes show the new text marked "(edited)".
  await a.locator('#message-list li[data-kind="message"]', { hasText: 'how is gateway B?' }).getByRole('button', { name: 'Edit this message' }).click();
  const box = a.getByLabel('Message', { exact: true });
  await box.fill('how is gateway B, really?');
  await box.press('Enter');
  said[said.indexOf('how is gateway B?')] = 'how is gateway B, really?';
  for (const p of [a, b]) {
    await p.locator('#message-list li[data-kind="message"]', { hasText: 'how is gateway B, really?' }).locator('.mark', { hasText: '(edited)' }).waitFor({ timeout: WAIT });
    await waitForTexts(p, said, 'after the edit');
  }

  // Reactions: ben adds 👍 from the picker, ann clicks the chip; both panes count two, each
  // marked as the viewer's own (the count after a reload, from history, is checked below).
  const greeting = (p) => p.locator('#message-list li[data-kind="message"]', { hasText: 'hello from ann' });
  await greeting(b).getByRole('button', { name: 'Add a reaction' }).click();
  await greeting(b).locator('.picker').getByRole('button', { name: '👍' }).click();
  for (const p of [a, b]) await greeting(p).locator('.chip', { hasText: '👍 1' }).waitFor({ timeout: WAIT });
  await greeting(a).locator('.chip', { hasText: '👍 1' }).click();
  for (const p of [a, b]) await greeting(p).locator('.chip.mine', { hasText: '👍 2' }).waitFor({ timeout: WAIT });

  // A thread: ben replies to the greeting in its thread panel. The reply is not a line of
  // the room; the greeting's link counts it on both pages, unread for ann (the root's
  // author, so a participant) until she opens the thread.
  const threadLink = (p) => greeting(p).locator('.thread-link');
  await threadLink(b).click();
  await b.locator('#thread-panel #thread-root', { hasText: 'hello from ann' }).waitFor({ timeout: WAIT });
  const reply = b.getByLabel('Reply', { exact: true });
  await reply.fill('replying in a thread, ann');
  await reply.press('Enter');
  await b.locator('#thread-list li', { hasText: 'replying in a thread, ann' }).waitFor({ timeout: WAIT });
  await threadLink(a).filter({ hasText: /^1 reply · last .* · 1 unread$/ }).waitFor({ timeout: WAIT });
  await threadLink(b).filter({ hasText: /^1 reply · last [^·]*$/ }).waitFor({ timeout: WAIT });
  await threadLink(a).click();
  await a.locator('#thread-list li', { hasText: 'replying in a thread, ann' }).waitFor({ timeout: WAIT });
  await threadLink(a).filter({ hasText: /^1 reply · last [^·]*$/ }).waitFor({ timeout: WAIT });
  await a.getByRole('button', { name: 'Close the thread' }).click();
  await b.getByRole('button', { name: 'Close the thread' }).click();
  for (const p of [a, b]) await waitForTexts(p, said, 'a reply is no line of the room');

  // Typing: ben types without sending; ann sees it (the gateway forwards one signal per 2 s).
  await b.waitForTimeout(2100);
  await b.getByLabel('Message', { exact: true }).pressSequentially('typ');
  await a.locator('#typing', { hasText: `${ben} is typing` }).waitFor({ timeout: WAIT });
  await b.getByLabel('Message', { exact: true }).fill('');

  // A direct message from ann (gateway A) reaches ben (gateway B) as a new room with a badge.
  await a.getByLabel('To (username)').fill(ben);
  await a.getByLabel('Direct message text').fill('psst, just you');
  await a.locator('#dm-form').getByRole('button', { name: 'Send' }).click();
  await a.locator('#room-title', { hasText: '@' + ben }).waitFor({ timeout: WAIT });
  await waitForTexts(a, ['psst, just you'], 'DM on A');
  await b.locator('#room-list button', { hasText: '@' + ann }).locator('.badge').waitFor({ timeout: WAIT });
  await b.locator('#room-list button', { hasText: '@' + ann }).click();
  await waitForTexts(b, ['psst, just you'], 'DM on B');
  await b.locator('#room-list button', { hasText: '#' + roomID }).first().click();
  await waitForTexts(b, said, 'ben back in the room');
  await a.locator('#room-list button', { hasText: '#' + roomID }).first().click();
  await waitForTexts(a, said, 'ann back in the room');

  // Unread badge: ben gets a message in a room he is not looking at.
  await join(b, roomID + '-x');
  await join(a, roomID + '-x');
  await b.locator('#room-list button', { hasText: '#' + roomID }).first().click();
  await say(a, 'psst, other room');
  await b.locator('#room-list button', { hasText: '#' + roomID + '-x' }).locator('.badge').waitFor({ timeout: WAIT });
  await a.locator('#room-list button', { hasText: '#' + roomID }).first().click();
  await waitForTexts(a, said, 'back in the first room');

  // A private room: ann creates it with the box checked and invites ben, who finds the
  // invitation after a reload and accepts it; then both talk in it.
  const secret = roomID + '-p';
  await a.locator('#join-private').check();
  await join(a, secret);
  await a.locator('#join-private').uncheck();
  await a.locator('#room-list button', { hasText: '#' + secret + ' 🔒' }).waitFor({ timeout: WAIT });
  await a.getByLabel('Invite to this private room (username)').fill(ben);
  await a.locator('#invite-form').getByRole('button', { name: 'Invite' }).click();
  await a.locator('#banner-text', { hasText: 'Invited ' + ben }).waitFor({ timeout: WAIT });
  await b.reload();
  await b.locator('#conn-status[data-state="online"]').waitFor({ timeout: WAIT });
  await b.locator('#invite-list li', { hasText: '#' + secret + ' from ' + ann }).getByRole('button', { name: 'Accept' }).click();
  await b.locator('#room-title').filter({ hasText: '#' + secret }).waitFor({ timeout: WAIT });
  await say(b, 'inside the private room');
  await waitForTexts(a, ['inside the private room'], 'private room on A');
  await waitForTexts(b, ['inside the private room'], 'private room on B');
  await shot(a, 'private.png');
  // ann kicks ben: ben's page says so and the room leaves his list; ann sees who did it.
  await a.getByLabel('Remove from this room (username)').fill(ben);
  await a.locator('#remove-form').getByRole('button', { name: 'Kick' }).click();
  await b.locator('#banner-text', { hasText: 'You were kicked' }).waitFor({ timeout: WAIT });
  await b.locator('#room-list button', { hasText: '#' + secret }).waitFor({ state: 'detached', timeout: WAIT });
  await a.locator('#message-list li', { hasText: `${ben} left (kicked by ${ann})` }).waitFor({ timeout: WAIT });
  await a.locator('#room-list button', { hasText: '#' + roomID }).first().click();
  await waitForTexts(a, said, 'ann back in the first room');
  await b.locator('#room-list button', { hasText: '#' + roomID }).first().click();
  await loadAllHistory(b); // the reload left only the newest page loaded
  await waitForTexts(b, said, 'ben back in the first room after the private one');

  // Search: an edited message is found by its new words; markup in a message comes back
  // as text (the match marked, nothing run); a hit opens the room it is in.
  const search = async (p, q, n) => {
    await p.getByLabel('Search messages in your rooms').fill(q);
    await p.locator('#search-form').getByRole('button', { name: 'Search' }).click();
    await p.locator('#search-status', { hasText: n === 0 ? 'No messages found' : `${n} message` }).waitFor({ timeout: WAIT });
    return p.$$eval('#search-list .snippet', (els) => els.map((e) => e.textContent));
  };
  assert.deepEqual(await search(a, 'really', 1), ['how is gateway B, really?'], 'search for the edited words');
  assert.deepEqual(await search(a, 'onerror', 1), [xss[0]], 'search for words in markup');
  assert.equal(await a.locator('#search-list mark').first().textContent(), 'onerror');
  assert.equal(await a.locator('#search-list img, #search-list script').count(), 0, 'a snippet became elements');
  assert.equal(await a.evaluate(() => window.__xss), undefined, 'a snippet ran');
  assert.deepEqual(await search(b, 'psst', 2), ['psst, other room', 'psst, just you'], 'ranked, then newest first');
  await b.locator('#search-list button', { hasText: 'psst, just you' }).click();
  await b.locator('#room-title', { hasText: '@' + ann }).waitFor({ timeout: WAIT });

  // The link an e-mail digest carries opens the room it names, whatever was open before.
  await b.goto(`${GW_B}/?gateways=${encodeURIComponent([GW_B, GW_A].join(','))}&page=4&room=${encodeURIComponent(roomID + '-x')}&seq=1`);
  await b.locator('#room-title').filter({ hasText: '#' + roomID + '-x' }).waitFor({ timeout: WAIT });
  await waitForTexts(b, ['psst, other room'], 'the linked room');
  await b.locator('#room-list button', { hasText: '#' + roomID }).first().click();
  await loadAllHistory(b);
  await waitForTexts(b, said, 'ben back in the first room');

  // Reload: the session survives, the newest page of history is shown, and older pages
  // load by seq when scrolling back (pages of 4 here).
  await a.reload();
  await a.locator('#conn-status[data-state="online"]').waitFor({ timeout: WAIT });
  await a.locator('#room-title').filter({ hasText: '#' + roomID }).waitFor({ timeout: WAIT });
  await loadAllHistory(a);
  await waitForTexts(a, said, 'history after reload');
  assert.ok(await a.locator('#history-start').isVisible(), 'the start of the room is marked');
  await a.locator('#message-list li[data-kind="message"]', { hasText: 'how is gateway B, really?' }).locator('.mark', { hasText: '(edited)' }).waitFor({ timeout: WAIT });
  await greeting(a).locator('.chip.mine', { hasText: '👍 2' }).waitFor({ timeout: WAIT });
  // Who is online, across gateways (refreshed every 15 s).
  for (const name of [ann, ben]) await b.locator('#online-list', { hasText: name }).waitFor({ timeout: WAIT });
  // The thread's summary comes back with history; the kept screenshot shows it open.
  await threadLink(a).filter({ hasText: /^1 reply · last [^·]*$/ }).click();
  await a.locator('#thread-list li', { hasText: 'replying in a thread, ann' }).waitFor({ timeout: WAIT });
  await shot(a, 'chat.png');
  await a.getByRole('button', { name: 'Close the thread' }).click();
  await shot(b, 'chat-b.png');

  // Gateway A goes away. Ann's page must notice, fail over to B, and resume: the
  // messages Ben sends meanwhile appear once each, in order.
  const stopped = await fetch(STOP_A_URL, { method: 'POST' });
  assert.equal(stopped.status, 200, 'the harness could not stop gateway A');
  await a.waitForFunction(() => /Reconnect/.test(document.getElementById('banner-text').textContent), null, { timeout: WAIT });
  for (const text of ['A is gone', 'still there?', 'third while you were away']) {
    await say(b, text);
    said.push(text);
  }
  await a.locator('#conn-status[data-gateway="gw-b"][data-state="online"]').waitFor({ timeout: WAIT });
  await waitForTexts(a, said, 'after fail-over on A');
  await say(a, 'back, via B');
  said.push('back, via B');
  await waitForTexts(a, said, 'A after sending via B');
  await waitForTexts(b, said, 'B after A sent via B');
  const counts = new Map();
  for (const t of await texts(a)) counts.set(t, (counts.get(t) || 0) + 1);
  assert.deepEqual([...counts.values()].filter((n) => n > 1), [], 'no message shown twice');
  await shot(a, 'failover.png');

  // Narrow screen: the room list becomes a drawer behind the Rooms button.
  await a.setViewportSize({ width: 390, height: 760 });
  assert.equal(await a.locator('#sidebar').isVisible(), false);
  await a.getByRole('button', { name: 'Rooms' }).click();
  assert.equal(await a.locator('#sidebar').isVisible(), true);
  await shot(a, 'narrow.png');
  await a.keyboard.press('Escape');
  assert.equal(await a.locator('#sidebar').isVisible(), false);

  assert.deepEqual([...a.problems, ...b.problems], [], 'errors in the pages');
});
