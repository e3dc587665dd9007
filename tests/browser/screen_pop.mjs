#!/usr/bin/env node
// The agent screen-pop in a real browser (Debian's Chromium through playwright-core).
//
//   node screen_pop.mjs BASE_URL TOKEN PERSONAL_NUMBER SCREENSHOT_DIR
//
// Opens BASE/agent?token=TOKEN, waits for a call to appear (over SSE), checks it shows
// "Unverified" with the not-found reason, opens the call's page through its link, types
// PERSONAL_NUMBER, presses "Verify again", waits for "pending" and then "verified" on the call
// page and for the list (still open in its own tab) to show the new verdict. Takes screenshots
// (list.png, call.png, list-narrow.png, call-narrow.png) into SCREENSHOT_DIR. Fails on any
// console error, page error or Content-Security-Policy violation.
//
// Progress goes to stderr (a line "screen_pop: listening" once the list page is live, so a
// harness can place the call after that); stdout gets exactly one JSON line: what the browser
// saw. Exit status 0 only when every check passed. Every wait is bounded.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [base, token, personalNumber, shotDir] = process.argv.slice(2);
if (!base || !token || !personalNumber || !shotDir) {
  process.stderr.write('usage: node screen_pop.mjs BASE_URL TOKEN PERSONAL_NUMBER SCREENSHOT_DIR\n');
  process.exit(2);
}

const CALL_APPEARS_MS = Number(process.env.CALL_APPEARS_MS || 20000);
const STEP_MS = Number(process.env.STEP_MS || 15000);
const OVERALL_MS = Number(process.env.OVERALL_MS || 55000);
/** Words of STRINGS.reasons['not-found'] in assets/agent/agent.js. */
const NOT_FOUND_WORDS = 'not in the customer directory';

const seen = { ok: false, base };
const problems = [];
let browser = null;
/** Open pages by name, for screenshots of a failure. */
const pages = new Map();

function log(message) {
  process.stderr.write(`screen_pop: ${message}\n`);
}

let finished = false;
async function finish(error) {
  if (finished) return;
  finished = true;
  if (error) seen.error = error.message || String(error);
  if (problems.length > 0) seen.problems = problems;
  seen.ok = !error && problems.length === 0;
  process.stdout.write(`${JSON.stringify(seen)}\n`);
  if (!seen.ok) {
    for (const [name, page] of pages) {
      await page
        .screenshot({ path: path.join(shotDir, `failure-${name}.png`), fullPage: true, timeout: 3000 })
        .catch(() => {});
    }
    log(`FAILED: ${seen.error || 'console errors, page errors or CSP violations (see "problems")'}`);
    for (const p of problems) log(`  ${p}`);
  }
  try {
    await browser?.close();
  } catch (_) {
    // already gone
  }
  process.exit(seen.ok ? 0 : 1);
}

setTimeout(() => finish(new Error(`gave up after ${OVERALL_MS} ms in all`)), OVERALL_MS).unref();

/** Records console errors, uncaught page errors and CSP violations of `page` as problems. */
function watch(page, name) {
  pages.set(name, page);
  page.on('console', (message) => {
    const text = message.text();
    if (message.type() === 'error' || /content security policy/i.test(text)) {
      problems.push(`${name}: console ${message.type()}: ${text}`);
    }
  });
  page.on('pageerror', (error) => problems.push(`${name}: page error: ${error.message}`));
  page.on('crash', () => problems.push(`${name}: the page crashed`));
}

/** Waits (bounded) for `predicate` in the page; fails with `what` and the page's text. */
async function waitIn(page, what, predicate, arg, timeout = STEP_MS) {
  try {
    return await page.waitForFunction(predicate, arg, { timeout, polling: 100 });
  } catch (error) {
    const text = await page
      .evaluate(() => document.body.innerText)
      .catch(() => '(page text unavailable)');
    const why = /timeout/i.test(error.message) ? `not seen within ${timeout} ms` : error.message.split('\n')[0];
    throw new Error(`${what}: ${why}. The page showed:\n${text}`);
  }
}

/** The page fits its width (no horizontal scrolling). */
async function assertNoHorizontalScroll(page, name) {
  const { scroll, client } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
  }));
  if (scroll > client + 1) throw new Error(`${name} scrolls sideways: ${scroll} px wide in ${client} px`);
}

/** Every violation event of the Content-Security-Policy, recorded from the first script on. */
function recordCspViolations() {
  window.__cspViolations = [];
  document.addEventListener('securitypolicyviolation', (e) => {
    window.__cspViolations.push(`${e.violatedDirective}: ${e.blockedURI || 'inline'}`);
  });
}

async function cspViolations(page) {
  return page.evaluate(() => window.__cspViolations || []);
}

async function main() {
  mkdirSync(shotDir, { recursive: true });
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: asRoot ? ['--no-sandbox'] : [],
    timeout: 20000,
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.addInitScript(recordCspViolations);

  // 1. The list, signed in by the token link.
  const list = await context.newPage();
  watch(list, 'list');
  const response = await list.goto(`${base}/agent?token=${encodeURIComponent(token)}`, {
    waitUntil: 'load',
    timeout: STEP_MS,
  });
  if (!response || response.status() !== 200) {
    throw new Error(`GET /agent?token=… answered ${response ? response.status() : 'nothing'}`);
  }
  const csp = response.headers()['content-security-policy'] || '';
  seen.csp = csp;
  if (!csp.includes("default-src 'self'")) {
    throw new Error(`/agent has no Content-Security-Policy with default-src 'self' (got "${csp}")`);
  }
  await waitIn(list, 'the live indicator', () =>
    document.getElementById('connection')?.dataset.state === 'live');
  seen.token_removed_from_url = !new URL(list.url()).searchParams.has('token');
  if (!seen.token_removed_from_url) throw new Error(`the token stays in the address bar: ${list.url()}`);
  log('listening');

  // 2. A call appears and is decided: unverified, not found.
  await waitIn(
    list,
    'a call row with a decided verdict',
    () => {
      const badge = document.querySelector('li[data-call-id] [data-testid="status"]');
      return badge && (badge.dataset.status === 'verified' || badge.dataset.status === 'unverified');
    },
    undefined,
    CALL_APPEARS_MS,
  );
  const row = list.locator('li[data-call-id]').first();
  const callId = await row.getAttribute('data-call-id');
  const badge = row.locator('[data-testid="status"]');
  const badgeText = (await badge.innerText()).replace(/\s+/g, ' ').trim();
  seen.call_id = callId;
  seen.list_initial = {
    status: await badge.getAttribute('data-status'),
    reason: await badge.getAttribute('data-reason'),
    text: badgeText,
    caller: (await row.locator('.row-caller').innerText()).trim(),
  };
  if (!/\bUnverified\b/.test(badgeText) || !badgeText.includes(NOT_FOUND_WORDS)) {
    throw new Error(`the call's badge should say Unverified, ${NOT_FOUND_WORDS}; it says "${badgeText}"`);
  }
  if (seen.list_initial.reason !== 'not-found') {
    throw new Error(`data-reason is "${seen.list_initial.reason}", not not-found`);
  }

  // 3. The call's page, through the row's link, in a second tab (the list stays open).
  const href = await row.locator('a[data-testid="call-link"]').getAttribute('href');
  const callUrl = new URL(href, base).toString();
  if (new URL(callUrl).pathname !== `/agent/calls/${callId}`) {
    throw new Error(`the row links to ${href}, not /agent/calls/${callId}`);
  }
  const call = await context.newPage();
  watch(call, 'call');
  const callResponse = await call.goto(callUrl, { waitUntil: 'load', timeout: STEP_MS });
  if (!callResponse || callResponse.status() !== 200) {
    throw new Error(`GET ${href} answered ${callResponse ? callResponse.status() : 'nothing'}`);
  }
  await waitIn(call, 'the call page showing the call', () => {
    const badge = document.querySelector('#call [data-testid="status"]');
    return badge && badge.dataset.status === 'unverified';
  });
  seen.call_initial = {
    text: (await call.locator('#call [data-testid="status"]').innerText()).replace(/\s+/g, ' ').trim(),
    reverify: (await call.locator('[data-testid="reverify-status"]').innerText()).trim(),
  };
  if (!seen.call_initial.text.includes(NOT_FOUND_WORDS)) {
    throw new Error(`the call page's badge says "${seen.call_initial.text}"`);
  }

  // 4. Verify again, with the personal number typed (idgate knows no person for this caller).
  await waitIn(call, 'an enabled "Verify again" button (the call with an agent)', () => {
    const b = document.querySelector('[data-testid="reverify-button"]');
    return b && !b.disabled;
  });
  await call.locator('[data-testid="personal-number"]').fill(personalNumber);
  const button = call.locator('[data-testid="reverify-button"]');
  if ((await button.innerText()).trim() !== 'Verify again') {
    throw new Error(`the button says "${await button.innerText()}"`);
  }
  await button.click();

  const reverify = call.locator('[data-testid="reverify-status"]');
  await waitIn(call, 'reverify-status "pending"', () => {
    const el = document.querySelector('[data-testid="reverify-status"]');
    const error = document.getElementById('reverify-error')?.textContent;
    if (error) throw new Error(`the page shows an error: ${error}`);
    return el && (el.dataset.state === 'pending' || el.dataset.state === 'verified');
  });
  const pendingState = await reverify.getAttribute('data-state');
  seen.reverify_pending = { state: pendingState, text: (await reverify.innerText()).trim() };
  if (pendingState !== 'pending') {
    throw new Error(`never saw the pending state (went straight to ${pendingState})`);
  }
  if (!seen.reverify_pending.text.includes('Waiting for the caller to confirm in the app')) {
    throw new Error(`pending shows "${seen.reverify_pending.text}"`);
  }
  if (!(await button.isDisabled())) throw new Error('"Verify again" stays enabled while pending');
  await call.screenshot({ path: path.join(shotDir, 'call-pending.png'), fullPage: true });

  await waitIn(call, 'reverify-status "verified"', () => {
    const el = document.querySelector('[data-testid="reverify-status"]');
    return el && (el.dataset.state === 'verified' || el.dataset.state === 'unverified');
  });
  seen.reverify_done = {
    state: await reverify.getAttribute('data-state'),
    text: (await reverify.innerText()).trim(),
    badge: (await call.locator('#call [data-testid="status"]').innerText()).replace(/\s+/g, ' ').trim(),
  };
  if (seen.reverify_done.state !== 'verified') {
    throw new Error(`the re-verification ended ${seen.reverify_done.state}: ${seen.reverify_done.text}`);
  }
  if (!/\bVerified\b/.test(seen.reverify_done.badge)) {
    throw new Error(`the call page's badge says "${seen.reverify_done.badge}" after verifying`);
  }
  if ((await call.locator('[data-testid="personal-number"]').inputValue()) !== '') {
    throw new Error('the personal number stays in the field after sending');
  }
  await call.screenshot({ path: path.join(shotDir, 'call.png'), fullPage: true });

  // 5. The list tab shows the latest verdict too.
  await waitIn(
    list,
    'the list row showing Verified',
    (id) => {
      const b = document.querySelector(`li[data-call-id="${CSS.escape(id)}"] [data-testid="status"]`);
      return b && b.dataset.status === 'verified';
    },
    callId,
  );
  const rowReverify = row.locator('[data-testid="reverify-status"]');
  seen.list_after = {
    text: (await badge.innerText()).replace(/\s+/g, ' ').trim(),
    reverify: (await rowReverify.innerText()).trim(),
  };
  await list.screenshot({ path: path.join(shotDir, 'list.png'), fullPage: true });

  // 6. Narrow windows: nothing scrolls sideways.
  await assertNoHorizontalScroll(list, 'the list at 1280 px');
  await assertNoHorizontalScroll(call, 'the call page at 1280 px');
  for (const [page, name] of [
    [list, 'list'],
    [call, 'call'],
  ]) {
    await page.setViewportSize({ width: 360, height: 740 });
    await page.waitForTimeout(100);
    await assertNoHorizontalScroll(page, `the ${name} page at 360 px`);
    await page.screenshot({ path: path.join(shotDir, `${name}-narrow.png`), fullPage: true });
  }

  // 7. No style attributes and no CSP violation events (console errors are checked in finish).
  for (const [page, name] of [
    [list, 'list'],
    [call, 'call'],
  ]) {
    for (const v of await cspViolations(page)) problems.push(`${name}: CSP violation: ${v}`);
    // (Playwright's screenshots leave an empty style="" on a focused input: not the page's.)
    const styled = await page.evaluate(
      () => [...document.querySelectorAll('[style]')].filter((e) => e.getAttribute('style').trim()).length,
    );
    if (styled > 0) problems.push(`${name}: ${styled} elements with a style attribute`);
  }
  seen.screenshots = path.resolve(shotDir);
}

main().then(
  () => finish(null),
  (error) => finish(error),
);
