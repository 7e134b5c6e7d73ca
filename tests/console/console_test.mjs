#!/usr/bin/env node
// The web console against the real server, in headless Chromium.
//
//   node tests/console/console_test.mjs AQUIFER_BIN BUILD_DIR
//
// Starts `aquifer serve` on a free port (fresh data dir, known admin secret),
// creates data through the HTTP API, then drives Debian's chromium
// (/usr/bin/chromium, or AQUIFER_CHROMIUM) with playwright-core: log in, see
// the data in the table view, page and filter, watch a live record arrive,
// write records from the form (a bad one shows its error), run SQL with a dry
// run (a bad query shows its error), see the usage chart, log out. Also checks
// what the server sends for the console (Content-Type, caching, CSP, 304).
// A screenshot of every page lands in BUILD_DIR/console-screenshots/.
// Anything missing (node, chromium, playwright-core) is a failure, never a skip.
import assert from 'node:assert/strict';
import {spawn} from 'node:child_process';
import {existsSync, mkdirSync, mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';

const [binary, buildDir] = process.argv.slice(2);
const here = dirname(fileURLToPath(import.meta.url));
const ADMIN = 'console-test-admin-secret-0123456789';
const CHROMIUM = process.env.AQUIFER_CHROMIUM || '/usr/bin/chromium';
const STEP_MS = 15000;

function fail(message) {
  console.error(`console_test: FAILED: ${message}`);
  process.exitCode = 1;
}

if (!binary || !buildDir) {
  fail('usage: console_test.mjs AQUIFER_BIN BUILD_DIR');
  process.exit(1);
}
if (!existsSync(binary)) {
  fail(`no aquifer binary at ${binary}`);
  process.exit(1);
}
if (!existsSync(CHROMIUM)) {
  fail(`no chromium at ${CHROMIUM}: run scripts/setup.sh (Debian's chromium package)`);
  process.exit(1);
}
let chromium;
try {
  ({chromium} = await import(join(here, 'node_modules', 'playwright-core', 'index.mjs')));
} catch (error) {
  fail(`playwright-core is not installed in ${here}/node_modules: run scripts/setup.sh (${error.message})`);
  process.exit(1);
}

const shots = join(buildDir, 'console-screenshots');
rmSync(shots, {recursive: true, force: true});
mkdirSync(shots, {recursive: true});
const work = mkdtempSync(join(tmpdir(), 'aquifer-console-'));

// --- The server ------------------------------------------------------------------------------

// python3 sets PR_SET_PDEATHSIG then execs the server, so it dies with this process
// even when ctest kills it at a timeout.
function startServer() {
  const launcher = 'import ctypes, os, sys\n' +
    'ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 9)\n' +
    'os.execv(sys.argv[1], sys.argv[1:])';
  const child = spawn('python3', ['-c', launcher, binary, 'serve', '--port', '0', '--data', join(work, 'data')], {
    env: {...process.env, AQUIFER_ADMIN_SECRET: ADMIN, AQUIFER_SERVER_HANDLER_THREADS: '8',
      AQUIFER_SERVER_IO_THREADS: '2'},
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`aquifer serve did not start:\n${output.join('')}`)), 60000);
    const onData = (chunk) => {
      output.push(chunk.toString());
      const match = /listening on (http:\/\/\S+)/.exec(output.join(''));
      if (match) {
        clearTimeout(timer);
        resolve({child, url: match[1], output});
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (chunk) => output.push(chunk.toString()));
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`aquifer serve exited with ${code}:\n${output.join('')}`));
    });
  });
}

let base;
async function api(method, path, body, {secret = ADMIN, expect} = {}) {
  const response = await fetch(base + path, {
    method,
    headers: {Authorization: `Bearer ${secret}`, 'Content-Type': 'application/json'},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (expect !== undefined) {
    assert.equal(response.status, expect, `${method} ${path}: ${text}`);
  } else {
    assert.ok(response.ok, `${method} ${path} answered ${response.status}: ${text}`);
  }
  return json;
}

// --- The checks ------------------------------------------------------------------------------

let step = 0;
async function shot(page, name) {
  step += 1;
  const file = join(shots, `${String(step).padStart(2, '0')}-${name}.png`);
  await page.screenshot({path: file, fullPage: true});
  console.log(`  screenshot ${file}`);
}

async function checkServedFiles() {
  const index = await fetch(`${base}/`);
  assert.equal(index.status, 200);
  assert.equal(index.headers.get('content-type'), 'text/html; charset=utf-8');
  assert.equal(index.headers.get('cache-control'), 'no-cache');
  const csp = index.headers.get('content-security-policy') || '';
  for (const directive of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
    "frame-ancestors 'none'"]) {
    assert.ok(csp.includes(directive), `CSP lacks ${directive}: ${csp}`);
  }
  assert.ok(!csp.includes('unsafe-inline') && !csp.includes('unsafe-eval'), csp);
  assert.equal(index.headers.get('x-content-type-options'), 'nosniff');
  const html = await index.text();
  const match = /src="(\/console\/[0-9a-f]{16}\/app\.js)"/.exec(html);
  assert.ok(match, `index.html names no versioned app.js:\n${html}`);
  assert.ok(!html.includes('%CONSOLE_BASE%'));
  const etag = index.headers.get('etag');
  const again = await fetch(`${base}/`, {headers: {'If-None-Match': etag}});
  assert.equal(again.status, 304);
  assert.equal((await again.text()).length, 0);

  const script = await fetch(base + match[1]);
  assert.equal(script.status, 200);
  assert.equal(script.headers.get('content-type'), 'text/javascript; charset=utf-8');
  assert.equal(script.headers.get('cache-control'), 'public, max-age=31536000, immutable');
  const css = await fetch(base + match[1].replace('app.js', 'console.css'));
  assert.equal(css.headers.get('content-type'), 'text/css; charset=utf-8');
  // An old version, an unknown file, another method: the API's error shapes.
  const stale = await fetch(`${base}/console/0000000000000000/app.js`);
  assert.equal(stale.status, 404);
  assert.equal((await stale.json()).error.code, 'not_found');
  assert.equal((await fetch(base + match[1].replace('app.js', 'nope.js'))).status, 404);
  const post = await fetch(`${base}/`, {method: 'POST'});
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET');
  // The API is untouched: still JSON 404 for unknown paths, /healthz as before.
  assert.equal((await fetch(`${base}/nope`)).status, 404);
  assert.equal((await fetch(`${base}/healthz`)).status, 200);
}

async function seed() {
  await api('POST', '/v1/projects', {name: 'shop'}, {expect: 201});
  await api('POST', '/v1/projects/shop/tables', {
    name: 'orders', key: ['id'],
    schema: {type: 'record', name: 'order', fields: [
      {name: 'id', type: 'long'}, {name: 'item', type: 'string'}, {name: 'total', type: 'double'},
      {name: 'note', type: ['null', 'string'], default: null}]},
  }, {expect: 201});
  const records = [];
  for (let id = 1; id <= 55; id++) records.push({id, item: `item-${id}`, total: id * 1.5});
  // Markup in data must come out as text.
  records.push({id: 56, item: '<img src=x onerror="window.__xss=1">', total: 0, note: '<b>bold</b>'});
  await api('POST', '/v1/projects/shop/tables/orders/records?wait=index,warehouse', records, {expect: 200});
}

async function text(locator) {
  await locator.first().waitFor({timeout: STEP_MS});
  return (await locator.first().textContent()).trim();
}

// Rows of the page's last grid (the results; a table's page shows its fields first).
async function rowCount(page) {
  return page.locator('main table.grid').last().locator('tbody tr').count();
}

async function run() {
  const server = await startServer();
  base = server.url;
  console.log(`console_test: server at ${base}`);
  let context;
  try {
    await checkServedFiles();
    await seed();
    const table = await api('GET', '/v1/projects/shop/tables/orders');

    context = await chromium.launchPersistentContext(join(work, 'chromium-profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
      viewport: {width: 1280, height: 900},
    });
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    const problems = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      // The console's own 4xx fetches log "Failed to load resource"; anything else is a bug
      // (a CSP violation, an exception).
      if (message.type() === 'error' && !/Failed to load resource/.test(message.text())) {
        problems.push(`console error: ${message.text()}`);
      }
    });

    // Log in: a wrong secret shows the API's error, the right one opens the projects.
    await page.goto(`${base}/`);
    await page.getByLabel('Secret').waitFor();
    await shot(page, 'login');
    await page.getByLabel('Secret').fill('aq_not_a_secret_at_all');
    await page.getByRole('button', {name: 'Log in'}).click();
    assert.equal(await text(page.locator('.error .error-code')), 'unauthenticated');
    assert.match(await text(page.locator('.error')), /HTTP 401/);
    await page.getByLabel('Secret').fill(ADMIN);
    await page.getByRole('button', {name: 'Log in'}).click();
    await page.getByRole('heading', {name: 'Projects'}).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('aquifer.secret')), ADMIN);
    await page.getByRole('link', {name: 'shop'}).waitFor();
    await shot(page, 'projects');

    // Tables of the project, then the table: schema, key, instance, the index.
    await page.getByRole('link', {name: 'shop'}).click();
    await page.getByRole('heading', {name: 'Tables of shop'}).waitFor();
    await page.getByRole('link', {name: 'orders'}).waitFor();
    await shot(page, 'tables');
    await page.getByRole('link', {name: 'orders'}).click();
    await page.getByRole('heading', {name: 'shop.orders'}).waitFor();
    assert.equal(await text(page.locator('.table-key')), 'id');
    assert.equal(await text(page.getByText(table.instance_id, {exact: true})), table.instance_id);
    await page.getByText('Page 1: 50 record(s).').waitFor();
    assert.equal(await text(page.getByRole('cell', {name: 'item-7', exact: true})), 'item-7');
    // Markup from the data is text: no image element, no script ran.
    assert.equal(await page.locator('main img').count(), 0);
    await page.getByRole('button', {name: 'Next page'}).click();
    await page.getByText('Page 2: 6 record(s).').waitFor();
    assert.equal(await text(page.getByRole('cell', {name: '<img src=x onerror="window.__xss=1">'})),
      '<img src=x onerror="window.__xss=1">');
    assert.equal(await page.locator('main img, main b').count(), 0);
    assert.equal(await page.evaluate(() => window.__xss), undefined);
    assert.equal(await page.getByRole('button', {name: 'Next page'}).isDisabled(), true);
    // The filter box.
    await page.getByLabel(/^Filter/).fill('{"id": {"_gte": 10, "_lt": 13}}');
    await page.getByRole('button', {name: 'Query'}).click();
    await page.getByText('Page 1: 3 record(s).').waitFor();
    assert.equal(await rowCount(page), 3);
    await shot(page, 'table-index');
    // A filter the server refuses: its code and message.
    await page.getByLabel(/^Filter/).fill('{"no_such_field": 1}');
    await page.getByRole('button', {name: 'Query'}).click();
    assert.equal(await text(page.locator('.error .error-code')), 'invalid_argument');
    assert.match(await text(page.locator('.error')), /HTTP 400.*no_such_field/s);
    await shot(page, 'table-index-error');

    // The log, paged by its cursor.
    await page.getByRole('link', {name: 'Log', exact: true}).click();
    await page.getByRole('heading', {name: /^Log:/}).waitFor();
    await page.getByText('Page 1: 50 record(s).').waitFor();
    await page.getByRole('button', {name: 'Next page'}).click();
    await page.getByText('Page 2: 6 record(s).').waitFor();
    await shot(page, 'table-log');

    // Live: a record written through the API appears without a reload.
    await page.getByRole('link', {name: 'Live', exact: true}).click();
    await page.locator('#live-state', {hasText: 'live'}).waitFor();
    // The subscription is open once the server has read the subscribe message; a
    // record written a moment before would still be delivered (the cursor is older).
    await api('POST', '/v1/projects/shop/tables/orders/records', [{id: 1000, item: 'live-one', total: 9.75}],
      {expect: 202});
    await page.getByRole('cell', {name: 'live-one', exact: true}).waitFor();
    assert.equal(await text(page.locator('#live-count')), '1');
    await api('POST', '/v1/projects/shop/tables/orders/records', [{id: 1001, item: 'live-two', total: 1}],
      {expect: 202});
    await page.getByRole('cell', {name: 'live-two', exact: true}).waitFor();
    assert.equal(await text(page.locator('#live-count')), '2');
    await shot(page, 'table-live');

    // Write from the form: a bad record shows each field's error, a good one lands.
    await page.getByRole('link', {name: 'Write', exact: true}).click();
    const editor = page.getByLabel(/^Records/);
    await editor.waitFor();
    assert.deepEqual(Object.keys(JSON.parse(await editor.inputValue())[0]), ['id', 'item', 'total', 'note']);
    await editor.fill('[{"id": 2000, "item": 5, "total": 1}]');
    await page.getByRole('button', {name: 'Write', exact: true}).click();
    assert.equal(await text(page.locator('.error .error-code')), 'invalid_records');
    assert.match(await text(page.locator('.error li')), /record 0, field item/);
    await shot(page, 'table-write-error');
    await editor.fill('[{"id": 2000, "item": "from-form", "total": 1.5, "note": "hi"}]');
    await page.getByRole('button', {name: 'Write', exact: true}).click();
    await page.getByText(/Written: 1 record\(s\), write id .*, visible in the index\./).waitFor();
    await shot(page, 'table-write');
    const written = await api('GET', `/v1/projects/shop/tables/orders/records?filter=${encodeURIComponent('{"id":2000}')}`);
    assert.equal(written.data.length, 1);
    assert.equal(written.data[0].item, 'from-form');
    assert.equal(written.data[0].note, 'hi');

    // SQL: the dry run's estimate, then the job's rows; a bad query shows its error.
    await page.getByRole('link', {name: 'SQL', exact: true}).click();
    await page.getByRole('heading', {name: 'SQL'}).waitFor();
    await page.getByLabel(/^Query/).fill('SELECT id, item, total FROM shop.orders WHERE id <= 3 ORDER BY id');
    await page.getByRole('button', {name: 'Estimate (dry run)'}).click();
    assert.match(await text(page.locator('.estimate')), /Dry run: would scan about .* of shop\.orders\./);
    await page.getByRole('button', {name: 'Run', exact: true}).click();
    assert.match(await text(page.locator('.job-summary')), /: 3 row\(s\)/);
    assert.equal(await rowCount(page), 3);
    for (const item of ['item-1', 'item-2', 'item-3']) {
      await page.getByRole('cell', {name: item, exact: true}).waitFor();
    }
    await shot(page, 'sql');
    await page.getByLabel(/^Query/).fill('SELECT no_such_column FROM shop.orders');
    await page.getByRole('button', {name: 'Run', exact: true}).click();
    const sqlError = await text(page.locator('.error'));
    assert.match(sqlError, /no_such_column/);
    await shot(page, 'sql-error');
    await page.getByLabel(/^Query/).fill('DELETE FROM shop.orders');
    await page.getByRole('button', {name: 'Estimate (dry run)'}).click();
    assert.equal(await text(page.locator('.error .error-code')), 'invalid_argument');

    // Usage per hour: a chart with this hour's bar.
    await page.getByRole('link', {name: 'Usage', exact: true}).click();
    await page.getByRole('heading', {name: 'shop'}).waitFor();
    await page.locator('figure.chart svg rect.bar').first().waitFor({state: 'attached'});
    assert.equal(await page.locator('figure.chart').first().locator('rect.bar').count(), 24);
    const lastBar = page.locator('figure.chart').first().locator('rect.bar').last();
    assert.ok(Number(await lastBar.getAttribute('height')) > 0, 'this hour has no bar');
    assert.match(await text(page.locator('figure.chart figcaption')), /Bytes written per hour/);
    await shot(page, 'usage');

    // Log out: the secret is gone, the login form is back.
    await page.getByRole('button', {name: 'Log out'}).click();
    await page.getByLabel('Secret').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('aquifer.secret')), null);

    assert.deepEqual(problems, [], 'the page reported errors');
  } finally {
    if (context) await context.close().catch(() => {});
    server.child.kill('SIGTERM');
    await new Promise((resolve) => {
      const timer = setTimeout(() => { server.child.kill('SIGKILL'); resolve(); }, 10000);
      server.child.on('exit', () => { clearTimeout(timer); resolve(); });
      if (server.child.exitCode !== null) { clearTimeout(timer); resolve(); }
    });
  }
}

const started = Date.now();
try {
  await run();
  console.log(`console_test: passed in ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${shots}`);
} catch (error) {
  fail(error.stack || String(error));
} finally {
  rmSync(work, {recursive: true, force: true});
}
process.exit(process.exitCode || 0);
