// What every browser test needs: the real server on a temp database, the
// API with the service token, a fake worker speaking the dispatch protocol,
// and a headless Chromium page that fails the test on any script error.
// A test file starts with `await setUp()`, which gives it all of these.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after } from 'node:test';
import { chromium } from 'playwright-core';

export const TOKEN = 'browser-test-service-token-0123456789abcdef';
export const ADMIN = { username: 'admin', password: 'browser-test-password' };

/** Where the tests save screenshots of what they check, when set. */
export const SHOTS = process.env.OPS_UI_SCREENSHOTS;

const BIN = process.env.OPS_CENTER_BIN || new URL('../../target/debug/ops-center', import.meta.url).pathname;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** Starts `ops-center serve` on port 0 and a temp database. */
export async function startServer() {
  const dir = mkdtempSync(join(tmpdir(), 'ops-ui-'));
  const child = spawn(BIN, ['serve', '--bind', '127.0.0.1:0', '--db', join(dir, 'ops.db')], {
    env: {
      ...process.env,
      OPS_ADMIN_USER: ADMIN.username,
      OPS_ADMIN_PASSWORD: ADMIN.password,
      OPS_SERVICE_TOKEN: TOKEN,
      RUST_LOG: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start:\n${log}`)), 30000);
    child.on('exit', (code) => reject(new Error(`the server exited with ${code}:\n${log}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = line.match(/^listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
  });
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.on('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  };
  return { base, stop, log: () => log };
}

/** Calls the API with the service token; throws unless the status is `want`. */
export async function api(base, method, path, body, want = 200) {
  const res = await fetch(`${base}/api${path}`, {
    method,
    headers: { 'X-OPS-Service-Token': TOKEN, ...(body !== undefined && { 'Content-Type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status !== want) throw new Error(`${method} ${path}: expected ${want}, got ${res.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

/** A worker that can run `opencode`, speaking the protocol as a launcher does. */
export function fakeWorker(base, id = 'browser-worker') {
  return {
    id,
    heartbeat: () => api(base, 'POST', '/dispatch/heartbeat', {
      worker_id: id, host: 'browser-test', pid: 1, version: 'test',
      agents: [{ slug: 'opencode', cli: 'opencode', available: true, authenticated: true }],
      models: [], slots_total: 2, slots_busy: 0, running_task_ids: [], draining: false,
    }),
    claim: () => api(base, 'POST', '/dispatch/next', { worker_id: id }),
    report: (task, kind, body) => api(base, 'POST', `/dispatch/tasks/${task}/${kind}`, { worker_id: id, ...body }),
  };
}

/** Dispatches task `id` and has a fresh fake worker (`workerId`) claim
 *  it; returns the worker and the claim's proof for its reports. */
export async function dispatchToWorker(base, id, workerId) {
  await api(base, 'POST', `/tasks/${id}/dispatch`);
  const worker = fakeWorker(base, workerId);
  await worker.heartbeat();
  const claim = await worker.claim();
  assert.equal(claim.task.id, id);
  return { worker, proof: { claim_token: claim.claim_token } };
}

/** A new task through the API (interactive, on opencode). */
export async function createTask(base, fields = {}) {
  const agents = await api(base, 'GET', '/agents');
  const opencode = agents.agents.find((a) => a.slug === 'opencode');
  return api(base, 'POST', '/tasks', {
    title: 'Tarea de prueba', description: 'di hola', execution: 'interactive', agent_id: opencode.id, ...fields,
  }, 201);
}

/** Headless Chromium (Debian's package) with the flags a closed network
 *  needs. Every page error and console error is collected; a test calls
 *  `expectNoErrors` (with the HTTP statuses it provoked on purpose). */
export async function openBrowser() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'es-ES' });
  const page = await context.newPage();
  let errors = [];
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const url = m.location().url || '';
    // Before logging in, the page asks who is logged in; that 401 is how
    // it learns nobody is.
    if (url.endsWith('/api/auth/me') && m.text().includes('status of 401')) return;
    errors.push(`console: ${m.text()} (${url})`);
  });
  page.on('dialog', (d) => d.accept());
  /** Fails on the errors collected since the last call, except failed
   *  requests with a status the test provoked on purpose. */
  const expectNoErrors = (allowedStatuses = []) => {
    const unexpected = errors.filter((e) => !allowedStatuses.some(
      (s) => e.includes(`the server responded with a status of ${s}`)));
    errors = [];
    if (unexpected.length) throw new Error(`errors in the page:\n${unexpected.join('\n')}`);
  };
  return { browser, page, expectNoErrors };
}

/** Logs in through the login form (as the admin, or as `who`). */
export async function login(page, base, who = ADMIN) {
  await page.goto(`${base}/`);
  await page.getByLabel('Usuario').fill(who.username);
  await page.getByLabel('Contraseña').fill(who.password);
  await page.getByRole('button', { name: 'Entrar' }).click();
  await page.getByRole('heading', { name: 'Tareas', exact: true }).waitFor();
}

/** Logs out through the sidebar's button. */
export async function logout(page) {
  await page.getByRole('button', { name: 'Cerrar sesión' }).click();
  await page.getByRole('button', { name: 'Entrar' }).waitFor();
}

/** Calls the API as the admin person (a session cookie): users and
 *  members are not for the service token. */
export async function adminApi(base) {
  const res = await fetch(`${base}/api/auth/login`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(ADMIN),
  });
  if (res.status !== 200) throw new Error(`admin login: ${res.status} ${await res.text()}`);
  const cookie = res.headers.get('set-cookie').split(';')[0];
  return async (method, path, body, want = 200) => {
    const r = await fetch(`${base}/api${path}`, {
      method,
      headers: { Cookie: cookie, ...(body !== undefined && { 'Content-Type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (r.status !== want) throw new Error(`${method} ${path}: expected ${want}, got ${r.status}: ${text}`);
    return text ? JSON.parse(text) : null;
  };
}

/** A person with `role` (`member` or `admin`) in workspace `workspaceId`. */
export async function createPerson(base, username, role, workspaceId) {
  const admin = await adminApi(base);
  const who = { username, password: `${username}-password-0123456789` };
  const user = await admin('POST', '/users', who, 201);
  await admin('PUT', `/workspaces/${workspaceId}/members/${user.id}`, { role });
  return who;
}

/** What a test file starts with (`await setUp()` at its top): the server
 *  on a new database, dispatch switched on (unless `dispatch: false`), a
 *  headless Chromium page and, unless `login: false`, the admin logged in
 *  on it. The browser and the server stop after the file's tests. */
export async function setUp({ dispatch = true, login: logIn = true } = {}) {
  const server = await startServer();
  let browser = null;
  const stop = async () => {
    await browser?.close();
    await server.stop();
  };
  try {
    const opened = await openBrowser();
    browser = opened.browser;
    if (dispatch) await api(server.base, 'PUT', '/settings/dispatch_enabled', { value: 'true' });
    if (logIn) await login(opened.page, server.base);
    after(stop);
    return { server, page: opened.page, expectNoErrors: opened.expectNoErrors };
  } catch (err) {
    await stop();
    throw err;
  }
}
