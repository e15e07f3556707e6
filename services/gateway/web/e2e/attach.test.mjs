// Browser test of attachments, run with `node --test` by e2e_attach_browser_test.go, which
// starts the platform (two gateways sharing one blob store) and passes GW_A, GW_B and
// CHROMIUM_PATH. Alice attaches an image on gateway A; Bob, on gateway B, sees its
// thumbnail inline (fetched with his token) and the file's metadata.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const { GW_A, GW_B } = process.env;
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WAIT = 30_000;
const args = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

let browser;
after(async () => { if (browser) await browser.close(); });

async function openPage(base) {
  const ctx = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  const page = await ctx.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push('page error: ' + e.message));
  // As in chat.test.mjs, failed resource loads are not problems here (the browser asks for
  // /favicon.ico; the refused upload below is a 415): what this test needs is asserted.
  page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) page.problems.push('console: ' + m.text()); });
  await page.goto(`${base}/`);
  return page;
}

async function register(page, name) {
  await page.getByLabel('Username', { exact: true }).fill(name);
  await page.getByLabel('Password', { exact: true }).fill('password-' + name);
  await page.getByRole('button', { name: 'Register' }).click();
  await page.locator('#conn-status[data-state="online"]').waitFor({ timeout: WAIT });
}

async function join(page, room) {
  await page.getByLabel('Join or create a room').fill(room);
  await page.getByRole('button', { name: 'Join', exact: true }).click();
  await page.locator('#room-title').filter({ hasText: '#' + room }).waitFor({ timeout: WAIT });
}

test('an image attached on one gateway shows as a thumbnail on the other', async () => {
  browser = await chromium.launch({ executablePath, args });
  const alice = await openPage(GW_A);
  const bob = await openPage(GW_B);
  await register(alice, 'alice');
  await register(bob, 'bob');
  await join(alice, 'pics');
  await join(bob, 'pics');

  const png = fs.readFileSync(path.join(here, 'testdata', 'gradient.png'));
  await alice.locator('#attach-input').setInputFiles({ name: 'gradient <b>.png', mimeType: 'image/png', buffer: png });
  await alice.locator('#attach-pending li').filter({ hasText: 'gradient <b>.png' }).waitFor({ timeout: WAIT });
  const box = alice.getByLabel('Message', { exact: true });
  await box.fill('a picture');
  await box.press('Enter');

  // Bob's page fetches the thumbnail with his token and shows it once it decoded.
  const thumb = bob.locator('#message-list img.thumb');
  await thumb.waitFor({ timeout: WAIT });
  await bob.waitForFunction(() => {
    const img = document.querySelector('#message-list img.thumb');
    return img && img.complete && img.naturalWidth > 0;
  }, null, { timeout: WAIT });
  const got = await thumb.evaluate((img) => ({ w: img.naturalWidth, h: img.naturalHeight, alt: img.alt, src: img.src.slice(0, 5) }));
  assert.deepEqual(got, { w: 320, h: 200, alt: 'gradient <b>.png', src: 'blob:' });
  // The name is text, not markup.
  assert.equal(await bob.locator('#message-list b').count(), 0);
  // The sender sees it too, after the message came back stored.
  await alice.locator('#message-list img.thumb').waitFor({ timeout: WAIT });
  // The composer is free again: nothing is left pending.
  assert.equal(await alice.locator('#attach-pending li').count(), 0);

  // A forbidden type is refused with the gateway's message, and nothing is pending.
  await alice.locator('#attach-input').setInputFiles({ name: 'page.txt', mimeType: 'text/plain', buffer: Buffer.from('<html><script>x</script></html>') });
  await alice.locator('#attach-status.error').filter({ hasText: 'not allowed' }).waitFor({ timeout: WAIT });
  assert.equal(await alice.locator('#attach-pending li').count(), 0);

  fs.mkdirSync(path.join(here, 'screenshots', 'latest'), { recursive: true });
  await bob.screenshot({ path: path.join(here, 'screenshots', 'latest', 'attach.png') });
  assert.deepEqual([...alice.problems, ...bob.problems], []);
});
