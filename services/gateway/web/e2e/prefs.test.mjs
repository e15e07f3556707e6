// Browser test of the notification settings panel and the push button (prefs.js, sw.js),
// run with `node --test` by e2e_prefs_browser_test.go, which starts persistence and one
// gateway with a VAPID key and passes GW (its base URL) and CHROMIUM_PATH. Headless
// Chromium cannot reach a real push service here, so the test stops at the service worker
// and the page's answer to a subscription the browser could not make.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const { GW } = process.env;
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WAIT = 30_000;
const args = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

let browser;
after(async () => { if (browser) await browser.close(); });

test('notification settings: defaults, DND, a room mute, bad input, push worker', { timeout: 120_000 }, async () => {
  browser = await chromium.launch({ executablePath, args });
  const ctx = await browser.newContext();
  await ctx.grantPermissions(['notifications'], { origin: GW });
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(GW + '/');
  const name = 'pref' + Date.now().toString(36);
  await page.getByLabel('Username', { exact: true }).fill(name);
  await page.getByLabel('Password', { exact: true }).fill('password-' + name);
  await page.getByRole('button', { name: 'Register' }).click();
  await page.locator('#conn-status[data-state="online"]').waitFor({ timeout: WAIT });
  await page.getByLabel('Join or create a room').fill('tea');
  await page.getByRole('button', { name: 'Join', exact: true }).click();
  await page.locator('#room-title').filter({ hasText: '#tea' }).waitFor({ timeout: WAIT });

  await page.locator('#prefs summary').click();
  await page.locator('#prefs-room option[value="tea"]').waitFor({ state: 'attached', timeout: WAIT });
  const status = page.locator('#prefs-status');

  // A zone that does not exist: the gateway's message is shown, nothing stored.
  await page.getByLabel('Notify me of').selectOption('mentions');
  await page.locator('#prefs-dnd').check();
  await page.getByLabel('Time zone').fill('Mars/Olympus');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await status.filter({ hasText: 'unknown time zone' }).waitFor({ timeout: WAIT });

  await page.getByLabel('Time zone').fill('Europe/Berlin');
  await page.locator('#prefs-dnd-start').fill('22:30');
  await page.locator('#prefs-dnd-end').fill('06:45');
  await page.getByRole('button', { name: 'Save', exact: true }).click();
  await status.filter({ hasText: 'Saved.' }).waitFor({ timeout: WAIT });

  await page.getByLabel('Level in this room').selectOption('all');
  await page.getByLabel('Mute').selectOption('60');
  await page.getByRole('button', { name: 'Save room' }).click();
  await page.locator('#prefs-room-muted').filter({ hasText: 'muted until' }).waitFor({ timeout: WAIT });

  const stored = await page.evaluate(async () => {
    const token = JSON.parse(sessionStorage.getItem('kchat.session')).token;
    const res = await fetch('/api/me/notification-preferences', { headers: { Authorization: 'Bearer ' + token } });
    return res.json();
  });
  assert.equal(stored.level, 'mentions');
  assert.deepEqual(stored.dnd, { start: '22:30', end: '06:45', zone: 'Europe/Berlin' });
  assert.equal(stored.rooms.length, 1);
  assert.equal(stored.rooms[0].room, 'tea');
  assert.equal(stored.rooms[0].level, 'all');
  const mutedFor = Date.parse(stored.rooms[0].muted_until) - Date.now();
  assert.ok(mutedFor > 55 * 60_000 && mutedFor <= 60 * 60_000, `muted for ${mutedFor} ms`);

  await page.getByRole('button', { name: 'Reset room' }).click();
  await status.filter({ hasText: 'Back to your defaults.' }).waitFor({ timeout: WAIT });
  assert.equal(await page.locator('#prefs-room-muted').textContent(), '');

  // Push: the button is offered (127.0.0.1 is a secure context), the service worker
  // registers from the page's root; the subscription itself needs a push service the
  // browser can reach, which this machine has not, and the page says so instead of failing.
  const push = page.getByRole('button', { name: 'Enable push' });
  await push.waitFor({ timeout: WAIT });
  await push.click();
  await status.filter({ hasText: /^Push/ }).waitFor({ timeout: WAIT });
  console.log('push button said:', await status.textContent());
  const scope = await page.evaluate(async () => (await navigator.serviceWorker.getRegistration('/sw.js'))?.scope);
  assert.equal(scope, GW + '/');
  assert.deepEqual(errors, []);
});
