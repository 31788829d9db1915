// Controls follow the role: what a person may not do is not offered (or is
// disabled with the reason), instead of asking for confirmation and then
// failing with 403. Any script error fails.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { api, createPerson, createTask, dispatchToWorker, login, logout, SHOTS as shots, setUp } from './harness.mjs';

// Each test logs in as the person it is about.
const { server, page, expectNoErrors } = await setUp({ login: false });
const ws = (await api(server.base, 'GET', '/workspaces')).workspaces[0];
const member = await createPerson(server.base, 'maria', 'member', ws.id);
const wsAdmin = await createPerson(server.base, 'wanda', 'admin', ws.id);
const sensitive = await createTask(server.base, { title: 'Sensible sin aprobar', sensitive: true });
// A stale task reconciled: an open alert about a task of the workspace.
const stale = await createTask(server.base, { title: 'Atascada', priority: 100 });
await dispatchToWorker(server.base, stale.id);
await api(server.base, 'POST', '/dispatch/reconcile-stale', { minutes: 0 });

const button = (name) => page.getByRole('button', { name, exact: true });

test('a member sees none of the admin controls', async () => {
  await login(page, server.base, member);
  await page.goto(`${server.base}/#/tareas/${sensitive.id}`);
  await page.getByRole('heading', { name: /Sensible sin aprobar/ }).waitFor();
  // Still what a member may do.
  await button('Editar').waitFor();
  await button('Despachar').waitFor();
  assert.equal(await button('Aprobar Human Gate').count(), 0);
  assert.equal(await page.getByText('forzar', { exact: true }).count(), 0);

  await page.goto(`${server.base}/#/operacion/automatizaciones/dispatching`);
  await page.getByRole('heading', { name: 'Tareas en dispatching' }).waitFor();
  const toggle = page.getByRole('switch');
  await toggle.waitFor();
  assert.equal(await toggle.isDisabled(), true);
  await page.getByText(/Solo un administrador \(global o de un workspace\) puede hacerlo/).first().waitFor();
  assert.equal(await button('Reconciliar stale').isVisible(), false);
  if (shots) await page.screenshot({ path: `${shots}/member-dispatching.png`, fullPage: true });

  await page.goto(`${server.base}/#/operacion/automatizaciones/watchdog`);
  await page.locator('table.alerts').getByText(/Tarea \d+ atascada en dispatching/).waitFor();
  assert.equal(await button('Ejecutar watchdog').isVisible(), false);
  assert.equal(await button('Resolver').count(), 0);
  await logout(page);
  expectNoErrors();
});

test('a workspace admin operates but does not see «Reconciliar stale»', async () => {
  await login(page, server.base, wsAdmin);
  await page.goto(`${server.base}/#/tareas/${sensitive.id}`);
  await button('Aprobar Human Gate').waitFor();
  assert.equal(await page.getByText('forzar', { exact: true }).count(), 0);

  await page.goto(`${server.base}/#/operacion/automatizaciones/dispatching`);
  await page.getByRole('heading', { name: 'Tareas en dispatching' }).waitFor();
  const toggle = page.getByRole('switch');
  await toggle.waitFor();
  assert.equal(await toggle.isDisabled(), false);
  assert.equal(await button('Reconciliar stale').isVisible(), false);
  await page.getByText(/Reconciliar stale: Solo un administrador global puede hacerlo/).waitFor();

  await page.goto(`${server.base}/#/operacion/automatizaciones/watchdog`);
  await page.locator('table.alerts').getByText(/Tarea \d+ atascada en dispatching/).waitFor();
  assert.equal(await button('Ejecutar watchdog').isVisible(), true);
  await button('Resolver').first().waitFor();
  await logout(page);
  expectNoErrors();
});

test('the global admin sees every control', async () => {
  await login(page, server.base);
  await page.goto(`${server.base}/#/tareas/${sensitive.id}`);
  await button('Aprobar Human Gate').waitFor();
  await page.getByText('forzar', { exact: true }).waitFor();
  await page.goto(`${server.base}/#/operacion/automatizaciones/dispatching`);
  await button('Reconciliar stale').waitFor();
  assert.equal(await page.getByRole('switch').isDisabled(), false);
  expectNoErrors();
});
