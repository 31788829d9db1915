// The operator's main flows in a real browser: log in, create and dispatch
// a task and see its agent's output, the Human Gate, and reconciling a
// stale task from Operación → Automatizaciones. Any script error fails.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { api, createTask, fakeWorker, login, openBrowser, startServer } from './harness.mjs';

let server;
let browser;
let page;
let expectNoErrors;

before(async () => {
  server = await startServer();
  ({ browser, page, expectNoErrors } = await openBrowser());
  await api(server.base, 'PUT', '/settings/dispatch_enabled', { value: 'true' });
  await login(page, server.base);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('create a task in the form, dispatch it, and read the agent output', async () => {
  await page.getByRole('button', { name: 'Nueva tarea' }).click();
  await page.getByLabel('Título').fill('Arreglar la página de login');
  await page.getByLabel('Prompt (descripción que recibe el agente)').fill('El botón no responde.');
  await page.locator('select[name=execution]').selectOption('interactive');
  const opencode = (await api(server.base, 'GET', '/agents')).agents.find((a) => a.slug === 'opencode');
  await page.locator('select[name=agent_id]').selectOption(String(opencode.id));
  await page.getByRole('button', { name: 'Crear tarea' }).click();
  await page.getByRole('heading', { name: /Arreglar la página de login/ }).waitFor();
  const id = Number(page.url().match(/#\/tareas\/(\d+)/)[1]);

  await page.getByRole('button', { name: 'Despachar' }).click();
  await page.getByText(`Tarea #${id} en cola para dispatch.`).waitFor();
  assert.equal((await api(server.base, 'GET', `/tasks/${id}`)).status, 'queued');

  const worker = fakeWorker(server.base);
  await worker.heartbeat();
  const claim = await worker.claim();
  assert.equal(claim.task.id, id);
  const proof = { claim_token: claim.claim_token };
  await worker.report(id, 'started', { ...proof, pid: 4242, log_path: '/tmp/t.log', err_log_path: '/tmp/t.err.log' });
  await worker.report(id, 'output', { ...proof, chunk: 'hola desde el agente\n' });
  await worker.report(id, 'finished', { ...proof, exit_code: 0, output: 'hola desde el agente\nlisto\n' });

  await page.reload();
  await page.getByText('En revisión', { exact: true }).first().waitFor();
  await page.locator('pre.output').getByText(/listo/).waitFor();
  expectNoErrors();
});

test('a sensitive task waits for the Human Gate until the admin approves it', async () => {
  const t = await createTask(server.base, { title: 'Rotar credenciales', sensitive: true });
  await page.goto(`${server.base}/#/tareas/${t.id}`);
  await page.getByRole('heading', { name: /Rotar credenciales/ }).waitFor();

  await page.getByRole('button', { name: 'Despachar' }).click();
  await page.getByText(/Human Gate: esta tarea sensible necesita la aprobación/).waitFor();
  assert.equal((await api(server.base, 'GET', `/tasks/${t.id}`)).blocked, true);

  await page.getByRole('button', { name: 'Aprobar Human Gate' }).click();
  await page.getByText('Human Gate aprobado.').waitFor();
  await page.getByRole('button', { name: 'Despachar' }).click();
  await page.getByText(`Tarea #${t.id} en cola para dispatch.`).waitFor();
  const after = await api(server.base, 'GET', `/tasks/${t.id}`);
  assert.equal(after.status, 'queued');
  assert.equal(after.gate_approved_by, 'admin');
  // The refused dispatch answered 409 on purpose.
  expectNoErrors([409]);
});

test('reconcile a task stuck in dispatching from Automatizaciones', async () => {
  // The highest priority, so that the worker claims this one.
  const t = await createTask(server.base, { title: 'Se quedó colgada', priority: 100 });
  await api(server.base, 'POST', `/tasks/${t.id}/dispatch`);
  const worker = fakeWorker(server.base, 'browser-worker-2');
  await worker.heartbeat();
  assert.equal((await worker.claim()).task.id, t.id);

  await page.goto(`${server.base}/#/operacion/automatizaciones/dispatching`);
  await page.getByRole('heading', { name: 'Tareas en dispatching' }).waitFor();
  await page.getByRole('link', { name: 'Se quedó colgada' }).waitFor();
  await page.getByLabel('Minutos (vacío: el ajuste)').fill('0');
  await page.getByRole('button', { name: 'Reconciliar stale' }).click();
  await page.getByText(new RegExp(`reconciled: 1 · task_ids: #${t.id}`)).waitFor();
  const after = await api(server.base, 'GET', `/tasks/${t.id}`);
  assert.equal(after.status, 'waiting');
  assert.equal(after.blocked, true);
  await page.screenshot({ path: process.env.SCREENSHOT || '/tmp/ops-ui-automatizaciones.png', fullPage: true });
  expectNoErrors();
});
