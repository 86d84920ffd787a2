#!/usr/bin/env node
// A person at a browser, for the end-to-end consent tests: opens a consent URL in headless
// Chromium (the system's /usr/bin/chromium, driven by playwright-core; no browser is
// downloaded) and answers whatever pages come, until the gateway shows an outcome page.
//
//   node consent.mjs --url URL --user USER [--password PW] [--decision approve|deny]
//                    [--timeout-ms N]
//
// The pages it knows, recognised by their forms rather than by address, so the same walk
// works whichever identity provider and OAuth provider a test configures:
//   - an outcome page (`main[data-outcome]`, e.g. the gateway's "done" page): stop there;
//   - the gateway's consent page (`button[name=decision][value=approve]`): press Approve,
//     or Deny with `--decision deny`;
//   - a sign-in page that asks for a user name only (`input[name=user]` with
//     `button[name=decision][value=allow]`): the gateway's development login, and the demo
//     provider's (Acme Tasks) sign-in and approval page: fill USER, press the allow button;
//   - the login and consent pages of oidc-provider's development interactions (the peer
//     IdP; `input[name=prompt]` = `login` | `consent`): fill login USER and password PW
//     (any non-empty password is accepted there), then press Continue.
//
// Output, on stdout, one JSON line:
//   exit 0: {"outcome": "done"|"denied"|"refused"|…, "final_url": …, "text": …, "hops": […]}
//           whenever an outcome page was reached, whatever the outcome;
//   exit 1: {"error": "…", "final_url": …, "hops": […]} naming the page it got stuck on (its
//           URL, HTTP status, title, headings, forms and the start of its text) or timed out at.
// The whole walk has one deadline (--timeout-ms, default 30000); every wait is for an event
// (a page load, a navigation), never a fixed delay.
//
// Environment: PORTCULLIS_CHROMIUM (default /usr/bin/chromium).
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const DEFAULT_PASSWORD = 'any-password';
const MAX_STEPS = 25; // forms answered before it gives up as going round in circles
const REPORT_LIMIT_MS = 3000; // bound on reading a page for an error report, and on closing

function usage(message) {
  return `${message}. Usage: node consent.mjs --url URL --user USER [--password PW] `
    + '[--decision approve|deny] [--timeout-ms N]';
}

/** An error's first line without Playwright's `page.goto: `-style prefix. */
function firstLine(e) {
  return String(e?.message ?? e).split('\n')[0].replace(/^[A-Za-z]+\.[A-Za-z]+: /, '');
}

function report(obj, code) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
  process.exit(code);
}

let opts;
try {
  ({ values: opts } = parseArgs({
    options: {
      url: { type: 'string' },
      user: { type: 'string' },
      password: { type: 'string', default: DEFAULT_PASSWORD },
      decision: { type: 'string', default: 'approve' },
      'timeout-ms': { type: 'string', default: '30000' },
    },
    strict: true,
  }));
} catch (e) {
  report({ error: usage(`consent.mjs: ${e.message}`) }, 1);
}
if (!opts.url) report({ error: usage('consent.mjs: --url is missing') }, 1);
if (!opts.user) report({ error: usage('consent.mjs: --user is missing') }, 1);
if (!['approve', 'deny'].includes(opts.decision)) {
  report({ error: usage(`consent.mjs: --decision must be approve or deny, not "${opts.decision}"`) }, 1);
}
const timeoutMs = Number(opts['timeout-ms']);
if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
  report({ error: usage(`consent.mjs: --timeout-ms must be a positive whole number of milliseconds, not "${opts['timeout-ms']}"`) }, 1);
}
const deadline = Date.now() + timeoutMs;
const remaining = () => Math.max(1, deadline - Date.now());
// The one deadline for the whole walk, whichever step is waiting when it passes.
setTimeout(() => fail(`the walk did not reach an outcome page within the ${timeoutMs} ms allowed (--timeout-ms)`), timeoutMs).unref();

const executablePath = process.env.PORTCULLIS_CHROMIUM || '/usr/bin/chromium';

// ------------------------------------------------------------------ the pages it knows
const OUTCOME = 'main[data-outcome]';
const CONSENT_APPROVE = 'button[name="decision"][value="approve"]';
const CONSENT_DENY = 'button[name="decision"][value="deny"]';
const USER_FORM = 'form:has(input[name="user"]):has(button[name="decision"][value="allow"])';
const IDP_LOGIN = 'form:has(input[name="prompt"][value="login"])';
const IDP_CONSENT = 'form:has(input[name="prompt"][value="consent"])';

/** What the current page is, as one of the kinds above, or `null` when it is none of them. */
async function classify(page) {
  for (const [kind, selector] of [
    ['outcome', OUTCOME],
    ['consent', CONSENT_APPROVE],
    ['user-form', USER_FORM],
    ['idp-login', IDP_LOGIN],
    ['idp-consent', IDP_CONSENT],
  ]) {
    if (await page.locator(selector).count() > 0) return kind;
  }
  return null;
}

/** A short description of the page for error reports: how the server answered, then what a
 * person would look at (title, headings, forms, the start of the text). */
async function describe(page, answer) {
  // Nothing to read while the server has not answered (the page would wait for it), nor
  // when no server answered (the page is Chromium's own error page).
  if (answer === undefined) return 'the server has not answered the request for this page';
  const parts = [answer];
  if (answer.startsWith('no HTTP response')) return parts.join(', ');
  try {
    const seen = await bounded(page.evaluate(() => {
      const text = (document.body?.innerText || '').replace(/\s+/g, ' ').trim();
      const headings = [...document.querySelectorAll('h1, h2')]
        .map((h) => h.innerText.trim()).filter(Boolean);
      const forms = [...document.forms].map((f) => {
        const fields = [...f.elements]
          .filter((el) => el.name)
          .map((el) => (el.tagName === 'BUTTON' ? `button ${el.name}=${el.value}` : `${el.type || el.tagName.toLowerCase()} ${el.name}`));
        return `${(f.method || 'get').toUpperCase()} ${f.action} [${fields.join(', ')}]`;
      });
      return { title: document.title, headings, forms, text: text.slice(0, 600) };
    }), 'reading the page');
    if (seen.title) parts.push(`title "${seen.title}"`);
    if (seen.headings.length) parts.push(`headings ${JSON.stringify(seen.headings)}`);
    parts.push(seen.forms.length ? `forms ${seen.forms.join('; ')}` : 'no forms');
    parts.push(`text "${seen.text}"`);
  } catch (e) {
    parts.push(`the page could not be read (${firstLine(e)})`);
  }
  return parts.join(', ');
}

// ------------------------------------------------------------------ the walk
const hops = [];
let lastAnswer; // how the server answered the latest document request
let browser;
let page;

/** `promise`, or a rejection after a few seconds: reporting must not hang on a stuck page. */
function bounded(promise, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${REPORT_LIMIT_MS} ms`)), REPORT_LIMIT_MS);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

let failing = false;
async function fail(what) {
  if (failing) return new Promise(() => {}); // the first failure reports and exits
  failing = true;
  // A page that failed to load shows as about:blank or Chromium's error page: name the URL
  // that was asked for instead.
  const shown = page ? page.url() : '';
  const where = shown && !/^(about:|chrome-error:)/.test(shown) ? shown : (hops.at(-1) || opts.url);
  const seen = page ? await describe(page, lastAnswer) : 'no page was open';
  const error = `${what}; stuck at ${where}: ${seen}`;
  if (browser) await bounded(browser.close(), 'closing Chromium').catch(() => {});
  report({ error, final_url: where, hops }, 1);
}

/** Run `action` (a click that submits a form) and wait for the page it leads to to load. */
async function submit(action, what) {
  const loaded = page.waitForEvent('load', { timeout: remaining() });
  try {
    await action();
    await loaded;
  } catch (e) {
    loaded.catch(() => {});
    const why = e.name === 'TimeoutError'
      ? `no new page loaded within the ${timeoutMs} ms allowed (--timeout-ms)`
      : firstLine(e);
    await fail(`after ${what}: ${why}`);
  }
}

try {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    // Tests run only against loopback servers: never through a proxy from the environment.
    args: ['--no-proxy-server'],
    timeout: remaining(),
  });
} catch (e) {
  report({
    error: `cannot start Chromium at ${executablePath}: ${firstLine(e)}. `
      + 'Fix: install Debian\'s chromium (apt-get install --no-install-recommends chromium) '
      + 'or set PORTCULLIS_CHROMIUM to a Chromium binary',
    final_url: opts.url,
    hops,
  }, 1);
}

try {
  const context = await browser.newContext();
  context.setDefaultTimeout(timeoutMs);
  page = await context.newPage();
} catch (e) {
  await fail(`cannot open a browser tab: ${firstLine(e)}`);
}
// Every document the main frame asked for, redirects included, in order.
const mainDocument = (req) => req.isNavigationRequest() && req.frame() === page.mainFrame();
page.on('request', (req) => {
  if (!mainDocument(req)) return;
  hops.push(req.url());
  lastAnswer = undefined;
});
page.on('response', (res) => {
  if (mainDocument(res.request())) lastAnswer = `HTTP status ${res.status()}`;
});
page.on('requestfailed', (req) => {
  if (mainDocument(req)) lastAnswer = `no HTTP response (${req.failure()?.errorText ?? 'request failed'})`;
});

try {
  await page.goto(opts.url, { waitUntil: 'load', timeout: remaining() });
} catch (e) {
  const why = e.name === 'TimeoutError'
    ? `it did not load within the ${timeoutMs} ms allowed (--timeout-ms)`
    : firstLine(e);
  await fail(`cannot open ${opts.url}: ${why}`);
}

// Anything unexpected on the way (a form that changed under the walk, a closed browser) is
// reported like a stuck walk, with the page it happened on.
try {
  for (let step = 0; ; step++) {
    if (step >= MAX_STEPS) await fail(`answered ${MAX_STEPS} forms without reaching an outcome page (going round in circles?)`);
    const kind = await classify(page);
    if (kind === 'outcome') {
      const main = page.locator(OUTCOME).first();
      const outcome = await main.getAttribute('data-outcome');
      const text = (await main.innerText()).replace(/\s+/g, ' ').trim();
      const final_url = page.url();
      await browser.close();
      report({ outcome, final_url, text, hops }, 0);
    } else if (kind === 'consent') {
      const button = opts.decision === 'approve' ? CONSENT_APPROVE : CONSENT_DENY;
      if (await page.locator(button).count() === 0) await fail(`the consent page has no ${opts.decision} button (${button})`);
      await submit(() => page.locator(button).first().click(), `pressing ${opts.decision} on the consent page`);
    } else if (kind === 'user-form') {
      const form = page.locator(USER_FORM).first();
      await form.locator('input[name="user"]').fill(opts.user);
      await submit(() => form.locator('button[name="decision"][value="allow"]').click(), `signing in as "${opts.user}"`);
    } else if (kind === 'idp-login') {
      const form = page.locator(IDP_LOGIN).first();
      await form.locator('input[name="login"]').fill(opts.user);
      await form.locator('input[name="password"]').fill(opts.password);
      await submit(() => form.locator('button[type="submit"]').first().click(), `signing in at the identity provider as "${opts.user}"`);
    } else if (kind === 'idp-consent') {
      const form = page.locator(IDP_CONSENT).first();
      await submit(() => form.locator('button[type="submit"]').first().click(), 'pressing Continue on the identity provider\'s consent page');
    } else {
      await fail('this page is none that the walk knows (an outcome page, the gateway\'s consent or login page, the identity provider\'s login or consent page, the demo provider\'s sign-in page)');
    }
  }
} catch (e) {
  await fail(`while answering the page: ${firstLine(e)}`);
}
